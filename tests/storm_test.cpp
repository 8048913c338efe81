// The kill storm: 100,000 jobs while another thread SIGKILLs a random worker every
// 2 ms; every job ends exactly once.

#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

namespace {

// The kill storm: jobs on 4 workers while another thread SIGKILLs a random worker
// every 2 ms with ::kill, from outside the library. Returns {results, errors}.
// A job lost before its last run (1 + retries) is a failure of the retries.
std::pair<int, int> kill_storm(int jobs, unsigned retries) {
  pc::pool pool;
  pool.start({.workers = 4});
  std::vector<std::atomic<int>> ends(static_cast<std::size_t>(jobs));
  std::atomic<int> results{0}, lost{0}, other{0}, wrong{0}, lost_early{0};
  std::atomic<bool> stop{false};
  std::atomic<int> kills{0};
  std::thread killer([&] {
    std::mt19937 rng(42);
    while (!stop) {
      std::this_thread::sleep_for(2ms);  // wait-ok: the storm's pace
      const auto ws = pool.workers();
      const pid_t pid = ws[rng() % ws.size()].pid;
      if (pid > 0 && ::kill(pid, SIGKILL) == 0) ++kills;
    }
  });
  std::vector<pc::job_handle<long long>> handles;
  handles.reserve(static_cast<std::size_t>(jobs));
  for (int i = 0; i < jobs; ++i) {
    auto h = pool.job([](long long x) { return x * x; }, static_cast<long long>(i), {.retries = retries});
    h.on_done([&, i](const long long& r, const pc::job_context&) {
      ++ends[static_cast<std::size_t>(i)];
      if (r != static_cast<long long>(i) * i) ++wrong;
      ++results;
    });
    h.on_error([&, i](const pc::job_error& e, const pc::job_context& c) {
      ++ends[static_cast<std::size_t>(i)];
      if (dynamic_cast<const pc::worker_lost*>(&e)) {
        lost_early += c.attempt != 1 + retries;
        if (++lost <= 3 && retries)
          MESSAGE("lost: " << std::string(e.what()) << " on attempt " << c.attempt << ", running " << c.running.count() / 1000 << " us");
      } else if (++other == 1) {
        MESSAGE("unexpected error: " << std::string(e.what()));
      }
    });
    handles.push_back(std::move(h));
  }
  // The storm lasts until every job has ended, or for a minute: under a sanitizer on a
  // loaded machine it kills workers about as fast as they fork, and tens of thousands of
  // jobs may still be queued then (seen in CI). Every job still open must end once the
  // storm stops: none is stranded.
  const auto storm_end = std::chrono::steady_clock::now() + 60s;
  std::size_t ended = 0;
  while (ended < handles.size() && handles[ended].wait_for(storm_end - std::chrono::steady_clock::now())) ++ended;
  if (ended < handles.size()) {
    const auto s = pool.stats();
    std::string states;
    for (const auto& w : pool.workers()) states += " " + std::to_string(static_cast<int>(w.state));
    MESSAGE("the storm's minute ended with job " << ended << " open: " << s.queued << " queued, worker states" << states
                                                 << " (0 starting, 1 ready, 2 backoff), " << s.respawns << " respawns");
  }
  stop = true;
  killer.join();
  int hung = 0;
  for (auto& h : handles) hung += !h.wait_for(60s);
  CHECK(hung == 0);
  // Every job ended exactly once: callbacks run on the pool's thread, so wait for the last.
  REQUIRE(test::eventually([&] { return results + lost + other == jobs; }, 10s));
  int not_once = 0;
  for (auto& e : ends) not_once += e.load() != 1;
  CHECK(not_once == 0);
  CHECK(wrong == 0);
  CHECK(other == 0);
  CHECK(lost_early == 0);
  MESSAGE(jobs << " jobs, " << kills.load() << " kills: " << results.load() << " results, " << lost.load()
               << " worker_lost, " << pool.stats().respawns << " respawns");
  CHECK(kills.load() > 20);
  // The storm's last kill may not be reported yet: wait for 4 ready workers that are all alive.
  REQUIRE(test::eventually([&] {
    const auto ws = pool.workers();
    return test::all_ready(pool, 4) &&
           std::all_of(ws.begin(), ws.end(), [](const auto& w) { return test::process_alive(w.pid); });
  }, 10s));
  return {results.load(), lost.load()};
}

}  // namespace

TEST_CASE("the kill storm: 100,000 jobs while workers are SIGKILLed every 2 ms; each ends exactly once") {
  const auto [results, errors] = kill_storm(100'000, 0);
  CHECK(results + errors == 100'000);
}

// Under a sanitizer every job stays longer on its worker, in the storm's way: a job
// may, rarely, be killed on all four of its runs (one in 100,000 seen in CI).
TEST_CASE("the kill storm with retries = 3: a job is lost only if it was killed on all four runs, and that is rare") {
  const auto [results, errors] = kill_storm(100'000, 3);
  CHECK(results + errors == 100'000);
  CHECK(errors <= (test::sanitized ? 10 : 0));
}
