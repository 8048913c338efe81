// Recycling: workers replaced after max_jobs_per_worker jobs, past max_worker_rss or by
// replace_workers(), each replacement ready before the old one leaves; no job fails.

#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

TEST_CASE("with max_jobs_per_worker = 100, 1,000 jobs run on several processes per slot and none fails") {
  std::mutex m;
  std::vector<pc::worker_exit> exits;
  pc::pool pool;  // after what its callbacks touch: they may fire until it is destroyed
  pool.on_worker_exit([&](const pc::worker_exit& e) {
    std::lock_guard lock(m);
    exits.push_back(e);
  });
  pool.start({.workers = 2, .max_jobs_per_worker = 100});
  // 100 us of work each: with microsecond jobs on 2 cores, one worker may serve
  // hundreds in a row while the other waits for a CPU, and see too few to recycle.
  std::vector<pc::job_handle<pid_t>> jobs;
  for (int i = 0; i < 1000; ++i)
    jobs.push_back(pool.job([](int) {
      for (auto until = std::chrono::steady_clock::now() + 100us; std::chrono::steady_clock::now() < until;) {
      }
      return ::getpid();
    }, i));
  std::map<int, std::set<pid_t>> pids_per_slot;
  for (auto& j : jobs) {
    REQUIRE(j.wait_for(10s));
    pids_per_slot[j.worker().id].insert(j.result());
  }
  for (const auto& [id, pids] : pids_per_slot) CHECK_MESSAGE(pids.size() > 1, "slot " << id);
  const auto s = pool.stats();
  CHECK(s.failed == 0);
  CHECK(s.recycled >= 6);
  CHECK(s.respawns == 0);
  REQUIRE(test::eventually([&] {
    std::lock_guard lock(m);
    return exits.size() >= 6;
  }));
  std::lock_guard lock(m);
  for (const auto& e : exits) {
    CHECK(e.reason == pc::exit_reason::recycled);
    CHECK(e.signal == SIGTERM);
  }
}

TEST_CASE("a recycled worker's replacement is ready before it leaves: no job ever waits for a worker") {
  pc::pool pool;
  pool.start({.workers = 1, .max_jobs_per_worker = 20});
  for (int i = 0; i < 200; ++i) {
    auto j = pool.job([](int x) { return x; }, i);
    CHECK(j.result() == i);
    // The one slot is always ready for the next job, even across recycling.
    CHECK(pool.workers()[0].state == pc::worker_state::ready);
  }
  CHECK(pool.stats().recycled >= 8);
}

TEST_CASE("a task that leaks memory is recycled by max_worker_rss, and no job fails") {
  pc::pool pool;
  pool.start({.workers = 2, .max_worker_rss = 96 << 20});
  std::vector<pc::job_handle<int>> jobs;
  for (int i = 0; i < 40; ++i)
    jobs.push_back(pool.job([](int mib) {
      // volatile: the compiler may drop an allocation nobody reads. Touched: resident, not just reserved.
      volatile char* leak = new char[static_cast<std::size_t>(mib) << 20];
      for (int k = 0; k < (mib << 20); k += 4096) leak[k] = 1;
      return mib;
    }, 16));
  for (auto& j : jobs) {
    REQUIRE(j.wait_for(20s));
    CHECK(j.result() == 16);
  }
  const auto s = pool.stats();
  CHECK(s.failed == 0);
  CHECK(s.recycled >= 2);
  for (const auto& w : pool.workers()) CHECK(w.rss < std::size_t{200} << 20);
}

TEST_CASE("a recycled worker still running a job that times out is killed all the same") {
  pc::pool pool;
  pool.start({.workers = 1, .concurrency = 2, .max_jobs_per_worker = 3, .kill_grace = 100ms});
  auto hung = pool.job(&test::sleep_ms, 60'000, {.timeout = 500ms});
  const pid_t old = hung.worker().pid;
  // Three quick jobs put the worker over its limit while the hung one holds it.
  for (int i = 0; i < 3; ++i) CHECK(pool.job([](int x) { return x; }, i).result() == i);
  REQUIRE(test::eventually([&] { return pool.workers()[0].pid != old; }));  // replaced, still running `hung`
  CHECK_THROWS_AS(hung.result(), pc::job_timeout);
  CHECK(test::process_gone(old, 3000ms));
  CHECK(pool.job([](int x) { return x + 1; }, 1).result() == 2);
}

TEST_CASE("max_worker_rss counts what a worker gains, not the memory it shares with the host") {
  // 160 MiB of the host's, resident in every worker from the fork on.
  std::vector<char> warm(160 << 20, 1);
  pc::pool pool;
  pool.start({.workers = 2, .max_worker_rss = 64 << 20});
  for (int i = 0; i < 20; ++i) CHECK(pool.job([](int x) { return x; }, i).result() == i);
  CHECK(pool.workers()[0].rss > std::size_t{100} << 20);
  CHECK(pool.stats().recycled == 0);
  CHECK(pool.stats().forks == 2);
  CHECK(warm[12345] == 1);
}

TEST_CASE("heap memory the host freed before start() is not held by the workers" * doctest::skip(test::sanitized)) {
  // 100 MiB in small blocks, written, then freed; one block above them keeps them in the heap.
  std::vector<char*> blocks;
  for (int i = 0; i < 200'000; ++i) {
    blocks.push_back(static_cast<char*>(std::malloc(512)));
    std::memset(blocks.back(), 1, 512);
  }
  char* above = static_cast<char*>(std::malloc(512));
  for (char* b : blocks) std::free(b);
  pc::pool pool;
  pool.start({.workers = 1});
  // Shared with the fork server, every page of it the host wrote again would be copied first.
  CHECK(pool.workers()[0].rss < std::size_t{40} << 20);
  std::free(above);
}

TEST_CASE("replace_workers gives every slot a new process, one at a time, and no job waits or fails") {
  pc::pool pool;
  pool.start({.workers = 3});
  const auto before = test::pids(pool.workers());
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0}, done{0};
  std::thread load([&] {
    while (!stop) {
      auto j = pool.job([](int x) { return x; }, 1);
      if (!j.wait_for(5s)) ++failed;
      try {
        j.result();
        ++done;
      } catch (...) {
        ++failed;
      }
    }
  });
  // Jobs flow first: three forks can be quicker than the load thread's first job.
  REQUIRE(test::eventually([&] { return done.load() > 0; }));
  pool.replace_workers();
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 3, before); }, 10s));
  stop = true;
  load.join();
  CHECK(failed == 0);
  CHECK(done > 0);
  CHECK(pool.stats().recycled == 3);
  CHECK(pool.stats().respawns == 0);
}
