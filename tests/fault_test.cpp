// Fault tolerance: timeouts, retries, recycling, crash-loop backoff, the kill
// storm, a dead fork server, drain. Every job ends exactly once.

#include <doctest/doctest.h>

#include <signal.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

namespace {

int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));  // wait-ok: the job's own work
  return ms;
}

int blocks_forever(int) {
  for (;;) ::pause();
}

int spins_forever(int) {
  for (volatile bool go = true; go;) {
  }
  return 0;
}

// A job that blocks on its first run and returns on the next: the first run
// removes the marker file it was given.
int blocks_first_time(const std::string& marker) {
  if (::unlink(marker.c_str()) == 0) blocks_forever(0);
  return 7;
}

std::string temp_path(const char* name) {
  return std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/parallelcode-" +
         std::to_string(::getpid()) + "-" + name;
}

void touch(const std::string& path) { std::fclose(std::fopen(path.c_str(), "w")); }

// worker_init for the crash-loop cases: aborts while this file exists.
std::string crash_flag;
void abort_if_flagged(int) {
  if (::access(crash_flag.c_str(), F_OK) == 0) std::abort();
}

}  // namespace

TEST_CASE("a job that runs past its timeout gets job_timeout; the pool is back to N workers and the next job runs") {
  pc::pool pool;
  pool.start({.workers = 2, .job_timeout = 200ms, .kill_grace = 100ms});
  auto slow = pool.job(&sleep_ms, 10'000);
  const pid_t pid = slow.worker().pid;
  REQUIRE(slow.wait_for(5s));
  try {
    slow.result();
    FAIL("result() should have thrown");
  } catch (const pc::job_timeout& e) {
    CHECK(e.timeout() == 200ms);
    CHECK(e.pid() == pid);
  }
  CHECK(test::process_gone(pid, 2000ms));
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 2, {pid}); }));
  CHECK(pool.job([](int x) { return x + 1; }, 1).result() == 2);
  CHECK(pool.job(&sleep_ms, 10).result() == 10);
}

TEST_CASE("a per-job timeout overrides the pool's, and 0 turns it off") {
  pc::pool pool;
  pool.start({.workers = 2, .job_timeout = 100ms, .kill_grace = 50ms});
  auto unlimited = pool.job(&sleep_ms, 300, {.timeout = 0ms});
  auto shorter = pool.job(&sleep_ms, 10'000, {.timeout = 50ms});
  CHECK(unlimited.result() == 300);
  CHECK_THROWS_AS(shorter.result(), pc::job_timeout);
}

TEST_CASE("the other jobs of a timed-out worker fail with worker_lost") {
  pc::pool pool;
  pool.start({.workers = 1, .concurrency = 2, .kill_grace = 50ms});
  auto bystander = pool.job(&blocks_forever, 0);
  auto late = pool.job(&sleep_ms, 10'000, {.timeout = 100ms});
  CHECK_THROWS_AS(late.result(), pc::job_timeout);
  REQUIRE(bystander.wait_for(5s));
  CHECK_THROWS_AS(bystander.result(), pc::worker_lost);
}

TEST_CASE("a SIGTERM the worker ignores is followed by SIGKILL after the grace") {
  pc::pool pool;
  pool.start({.workers = 1, .kill_grace = 100ms});
  auto stubborn = pool.job([](int ms) {
    ::signal(SIGTERM, SIG_IGN);
    return sleep_ms(ms);
  }, 10'000, {.timeout = 100ms});
  const pid_t pid = stubborn.worker().pid;
  CHECK_THROWS_AS(stubborn.result(), pc::job_timeout);
  CHECK(test::process_gone(pid, 3000ms));
}

TEST_CASE("with retries = 2, a job whose first worker is killed completes on its second try") {
  pc::pool pool;
  pool.start({.workers = 2});
  const std::string marker = temp_path("retry");
  touch(marker);
  std::atomic<unsigned> attempt{0};
  auto j = pool.job(&blocks_first_time, marker, {.retries = 2});
  j.on_done([&](const int&, const pc::job_context& c) { attempt = c.attempt; });
  REQUIRE(test::eventually([&] { return ::access(marker.c_str(), F_OK) != 0; }));  // the first run is on it
  const pid_t first = j.worker().pid;
  const int first_id = j.worker().id;
  REQUIRE(pool.kill(first));
  REQUIRE(j.wait_for(5s));
  CHECK(j.result() == 7);
  REQUIRE(test::eventually([&] { return attempt.load() == 2; }));
  // The retry went to the other worker, not to the slot it died on.
  CHECK(j.worker().id != first_id);
  CHECK(pool.stats().retried == 1);
}

TEST_CASE("a job is never retried after it threw or timed out") {
  pc::pool pool;
  pool.start({.workers = 2, .kill_grace = 50ms});
  auto threw = pool.job([](int) -> int { throw std::runtime_error("no"); }, 0, {.retries = 3});
  auto late = pool.job(&sleep_ms, 10'000, {.timeout = 100ms, .retries = 3});
  CHECK_THROWS_AS(threw.result(), pc::job_failed);
  CHECK_THROWS_AS(late.result(), pc::job_timeout);
  CHECK(pool.stats().retried == 0);
}

TEST_CASE("retries run out: a job that kills every worker it runs on fails with worker_lost after 1 + retries runs") {
  pc::pool pool;
  pool.start({.workers = 2});
  std::atomic<unsigned> attempts{0};
  auto j = pool.job([](int) -> int { ::raise(SIGKILL); return 0; }, 0, {.retries = 2});
  j.on_error([&](const pc::job_error&, const pc::job_context& c) { attempts = c.attempt; });
  CHECK_THROWS_AS(j.result(), pc::worker_lost);
  REQUIRE(test::eventually([&] { return attempts.load() == 3; }));
  CHECK(pool.stats().retried == 2);
}

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

TEST_CASE("a worker_init that aborts in every new worker triggers backoff: forks stay bounded, the pool reports it, and recovers") {
  crash_flag = temp_path("crash");
  ::unlink(crash_flag.c_str());
  std::atomic<unsigned> loops{0};
  std::atomic<long long> longest_ms{0};
  pc::pool pool;  // after what its callbacks touch: they may fire until it is destroyed
  pool.on_crash_loop([&](const pc::worker_info&, unsigned, std::chrono::milliseconds delay) {
    ++loops;
    if (delay.count() > longest_ms) longest_ms = delay.count();
  });
  pool.start({.workers = 2, .worker_init = &abort_if_flagged});
  REQUIRE(pool.job([](int x) { return x; }, 1).result() == 1);

  touch(crash_flag);
  const auto forks_before = pool.stats().forks;
  for (const auto& w : pool.workers()) pool.kill(w.pid);
  // Delays double from 10 ms: reaching 320 ms takes ~0.6 s, in which a pool
  // without backoff would fork over a thousand times.
  REQUIRE(test::eventually([&] { return longest_ms.load() >= 320; }, 10s));
  const auto forks = pool.stats().forks - forks_before;
  MESSAGE("forks during the crash loop: " << forks << ", crash-loop events: " << loops.load());
  CHECK(forks <= 30);
  CHECK(loops.load() >= 4);
  const auto ws = pool.workers();
  CHECK(std::any_of(ws.begin(), ws.end(), [](const auto& w) { return w.state == pc::worker_state::backoff; }));
  // Jobs submitted meanwhile wait for a worker rather than fail.
  auto waiting = pool.job([](int x) { return x * 3; }, 5);

  ::unlink(crash_flag.c_str());
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 2); }, 10s));
  REQUIRE(waiting.wait_for(5s));
  CHECK(waiting.result() == 15);
}

TEST_CASE("a worker_init that always aborts makes start() fail at once, naming the signal") {
  crash_flag = temp_path("crash-start");
  touch(crash_flag);
  pc::pool pool;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    pool.start({.workers = 2, .worker_init = &abort_if_flagged});
    FAIL("start() should have thrown");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("SIGABRT") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  ::unlink(crash_flag.c_str());
  CHECK(test::children().empty());
}

TEST_CASE("a worker stuck in an endless loop, with no timeout, does not hold up the other jobs") {
  pc::pool pool;
  pool.start({.workers = 2});
  auto stuck = pool.job(&spins_forever, 0);
  const pid_t stuck_pid = stuck.worker().pid;
  std::vector<pc::job_handle<pid_t>> jobs;
  for (int i = 0; i < 50; ++i) jobs.push_back(pool.job([](int) { return ::getpid(); }, i));
  for (auto& j : jobs) {
    REQUIRE(j.wait_for(5s));
    CHECK(j.result() != stuck_pid);
  }
  CHECK_FALSE(stuck.wait_for(0ms));
}

TEST_CASE("jobs handed ahead to a quick worker that then gets stuck are taken back and run elsewhere") {
  pc::pool pool;
  pool.start({.workers = 2});
  for (int i = 0; i < 10; ++i) pool.job([](int x) { return x; }, i).result();  // both workers are quick now
  auto stuck = pool.job(&spins_forever, 0);
  const pid_t stuck_pid = stuck.worker().pid;
  std::vector<pc::job_handle<pid_t>> jobs;
  for (int i = 0; i < 200; ++i) jobs.push_back(pool.job([](int) { return ::getpid(); }, i));
  for (auto& j : jobs) {
    REQUIRE(j.wait_for(5s));
    CHECK(j.result() != stuck_pid);
  }
  // Jobs went ahead; whether to the stuck worker too depends on how quick its last job
  // looked (slow under sanitizers): if they did, they came back, or the waits above failed.
  CHECK(pool.stats().handed_ahead > 0);
  CHECK_FALSE(stuck.wait_for(0ms));
}

TEST_CASE("a worker killed with jobs handed ahead: those it never took run elsewhere, not as retries") {
  pc::pool pool;
  pool.start({.workers = 2});
  for (int i = 0; i < 10; ++i) pool.job([](int x) { return x; }, i).result();
  auto victim = pool.job(&blocks_forever, 0);
  const pid_t victim_pid = victim.worker().pid;
  std::vector<pc::job_handle<int>> jobs;
  for (int i = 0; i < 200; ++i) jobs.push_back(pool.job([](int x) { return x * 2; }, i));
  REQUIRE(pool.kill(victim_pid));
  for (int i = 0; i < 200; ++i) {
    REQUIRE(jobs[static_cast<std::size_t>(i)].wait_for(5s));
    CHECK(jobs[static_cast<std::size_t>(i)].result() == i * 2);  // no worker_lost: none of them ran on it
  }
  CHECK_THROWS_AS(victim.result(), pc::worker_lost);
  CHECK(pool.stats().retried == 0);
}

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
  int hung = 0;
  for (auto& h : handles) hung += !h.wait_for(60s);
  stop = true;
  killer.join();
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

TEST_CASE("killing the fork server: the pool starts a new one and respawns its workers; queued jobs run") {
  std::atomic<int> exits{0};
  pc::pool pool;  // after what its callbacks touch: they may fire until it is destroyed
  pool.on_worker_exit([&](const pc::worker_exit&) { ++exits; });
  pool.start({.workers = 2});
  const pid_t old_server = pool.stats().fork_server;
  const auto old_pids = test::pids(pool.workers());
  auto a = pool.job(&blocks_forever, 0);
  auto b = pool.job(&blocks_forever, 1);
  auto queued = pool.job([](int x) { return x + 40; }, 2);
  a.worker();
  b.worker();
  REQUIRE(::kill(old_server, SIGKILL) == 0);
  REQUIRE(a.wait_for(5s));
  REQUIRE(b.wait_for(5s));
  CHECK_THROWS_AS(a.result(), pc::worker_lost);
  CHECK_THROWS_AS(b.result(), pc::worker_lost);
  REQUIRE(queued.wait_for(5s));
  CHECK(queued.result() == 42);
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 2, old_pids); }));
  const auto s = pool.stats();
  CHECK(s.fork_server > 0);
  CHECK(s.fork_server != old_server);
  CHECK(s.fork_server_restarts == 1);
  for (pid_t pid : old_pids) CHECK(test::process_gone(pid));
  CHECK(test::eventually([&] { return exits.load() == 2; }));
  CHECK(pool.job([](int x) { return x; }, 9).result() == 9);
}

TEST_CASE("worker events: on_worker_spawn and on_worker_exit report pids and how they ended") {
  std::mutex m;
  std::vector<pc::worker_info> spawned;
  std::vector<pc::worker_exit> exited;
  pc::pool pool;  // after what its callbacks touch: they may fire until it is destroyed
  pool.on_worker_spawn([&](const pc::worker_info& w) {
    std::lock_guard lock(m);
    spawned.push_back(w);
  });
  pool.on_worker_exit([&](const pc::worker_exit& e) {
    std::lock_guard lock(m);
    exited.push_back(e);
  });
  pool.start({.workers = 2});
  REQUIRE(test::eventually([&] {  // the events run on the pool's thread, maybe just after start() returned
    std::lock_guard lock(m);
    return spawned.size() == 2;
  }));
  const pid_t victim = pool.workers()[0].pid;
  const int victim_id = pool.workers()[0].id;
  REQUIRE(pool.kill(victim));
  REQUIRE(test::eventually([&] {
    std::lock_guard lock(m);
    return exited.size() == 1 && spawned.size() == 3;
  }));
  std::lock_guard lock(m);
  CHECK(exited[0].pid == victim);
  CHECK(exited[0].signal == SIGKILL);
  CHECK(exited[0].exit_status == -1);
  CHECK(exited[0].reason == pc::exit_reason::died);
  CHECK(exited[0].worker.id == victim_id);
  CHECK(spawned[2].id == victim_id);
  CHECK(spawned[2].pid != victim);
  CHECK(spawned[2].state == pc::worker_state::ready);
}

TEST_CASE("drain lets queued and running jobs finish, refuses new ones, then frees the pool") {
  pc::pool pool;
  pool.start({.workers = 2});
  std::vector<pc::job_handle<int>> jobs;
  for (int i = 0; i < 6; ++i) jobs.push_back(pool.job(&sleep_ms, 50));
  std::thread drainer([&] { CHECK(pool.drain(10s)); });
  // Probe until one is refused: those accepted before the drain began run like the rest.
  std::vector<pc::job_handle<int>> accepted;
  std::string refusal;
  REQUIRE(test::eventually([&] {
    auto probe = pool.job([](int x) { return x; }, 1);
    if (!probe.wait_for(0s)) {
      accepted.push_back(std::move(probe));
      return false;
    }
    try {
      probe.result();
    } catch (const pc::job_cancelled& e) {
      refusal = e.what();
    }
    return true;
  }));
  drainer.join();
  CHECK(refusal.find("draining") != std::string::npos);
  for (auto& j : jobs) CHECK(j.result() == 50);
  for (auto& j : accepted) CHECK(j.result() == 1);
  CHECK(pool.workers().empty());
  CHECK(test::children().empty());
}

TEST_CASE("drain past its deadline cancels what is still running") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto forever = pool.job(&blocks_forever, 0);
  forever.worker();
  CHECK_FALSE(pool.drain(100ms));
  REQUIRE(forever.wait_for(1s));
  CHECK_THROWS_AS(forever.result(), pc::job_cancelled);
  CHECK(test::children().empty());
}

TEST_CASE("a recycled worker still running a job that times out is killed all the same") {
  pc::pool pool;
  pool.start({.workers = 1, .concurrency = 2, .max_jobs_per_worker = 3, .kill_grace = 100ms});
  auto hung = pool.job(&sleep_ms, 60'000, {.timeout = 500ms});
  const pid_t old = hung.worker().pid;
  // Three quick jobs put the worker over its limit while the hung one holds it.
  for (int i = 0; i < 3; ++i) CHECK(pool.job([](int x) { return x; }, i).result() == i);
  REQUIRE(test::eventually([&] { return pool.workers()[0].pid != old; }));  // replaced, still running `hung`
  CHECK_THROWS_AS(hung.result(), pc::job_timeout);
  CHECK(test::process_gone(old, 3000ms));
  CHECK(pool.job([](int x) { return x + 1; }, 1).result() == 2);
}

TEST_CASE("a retry does not wait for a stuck worker: it runs on the slot it died on if that one is free") {
  pc::pool pool;
  pool.start({.workers = 2});
  auto stuck = pool.job(&spins_forever, 0);  // holds one slot for good, no timeout
  const std::string marker = temp_path("retry-stuck");
  touch(marker);
  auto retried = pool.job(&blocks_first_time, marker, {.retries = 1});
  REQUIRE(test::eventually([&] { return ::access(marker.c_str(), F_OK) != 0; }));
  REQUIRE(pool.kill(retried.worker().pid));
  REQUIRE(retried.wait_for(5s));
  CHECK(retried.result() == 7);
  CHECK(pool.drain(100ms) == false);  // only `stuck` is left, cancelled
  CHECK_THROWS_AS(stuck.result(), pc::job_cancelled);
}

TEST_CASE("jobs that crash their worker are not a crash loop: each replacement comes at once") {
  std::atomic<int> loops{0};
  pc::pool pool;  // after what its callbacks touch: they may fire until it is destroyed
  pool.on_crash_loop([&](const pc::worker_info&, unsigned, std::chrono::milliseconds) { ++loops; });
  pool.start({.workers = 1});
  for (int i = 0; i < 12; ++i) {
    auto crash = pool.job([](int) -> int { ::raise(SIGSEGV); return 0; }, i);
    REQUIRE(crash.wait_for(5s));
    CHECK_THROWS_AS(crash.result(), pc::worker_lost);
    CHECK(pool.workers()[0].state != pc::worker_state::backoff);
  }
  CHECK(loops.load() == 0);
  CHECK(pool.job([](int x) { return x; }, 5).result() == 5);
}

TEST_CASE("on_worker_spawn names the process that came up, replacements forked ahead included") {
  std::mutex m;
  std::set<pid_t> spawned;
  pc::pool pool;  // after what its callbacks touch: they may fire until it is destroyed
  pool.on_worker_spawn([&](const pc::worker_info& w) {
    std::lock_guard lock(m);
    spawned.insert(w.pid);
  });
  pool.start({.workers = 1, .max_jobs_per_worker = 20});
  std::set<pid_t> ran;
  for (int i = 0; i < 100; ++i) ran.insert(pool.job([](int) { return ::getpid(); }, i).result());
  REQUIRE(ran.size() >= 4);
  std::lock_guard lock(m);
  for (pid_t pid : ran) CHECK_MESSAGE(spawned.count(pid) == 1, "no spawn event for " << pid);
}

TEST_CASE("free() reports every worker's exit with the reason stopped") {
  std::mutex m;
  std::vector<pc::worker_exit> exits;
  pc::pool pool;  // after what its callbacks touch: they may fire until it is destroyed
  pool.on_worker_exit([&](const pc::worker_exit& e) {
    std::lock_guard lock(m);
    exits.push_back(e);
  });
  pool.start({.workers = 3});
  const auto before = test::pids(pool.workers());
  pool.free();
  std::lock_guard lock(m);
  REQUIRE(exits.size() == 3);
  for (const auto& e : exits) {
    CHECK(e.reason == pc::exit_reason::stopped);
    CHECK(std::find(before.begin(), before.end(), e.pid) != before.end());
  }
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

TEST_CASE("a pool of 600 workers starts: spawn requests never block the pool's thread") {
  pc::pool pool;
  pool.start({.workers = 600, .ring_bytes = 4096});
  CHECK(test::all_ready(pool, 600));
  std::vector<pc::job_handle<int>> jobs;
  for (int i = 0; i < 1200; ++i) jobs.push_back(pool.job([](int x) { return x; }, i));
  for (int i = 0; i < 1200; ++i) CHECK(jobs[static_cast<std::size_t>(i)].result() == i);
}

TEST_CASE("resize grows and shrinks the pool; removed workers finish their jobs first") {
  pc::pool pool;
  pool.start({.workers = 2, .max_workers = 4});
  pool.resize(4);
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 4); }));
  auto slow = pool.job(&sleep_ms, 300);
  slow.worker();
  pool.resize(1);
  CHECK(pool.workers().size() == 1);
  CHECK(slow.result() == 300);  // its worker may be gone from the list: it finished the job all the same
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 1); }));
  const pid_t fork_server = pool.stats().fork_server;
  REQUIRE(test::eventually([&] { return test::children_of(fork_server).size() == 1; }));  // the others are gone
  CHECK(pool.job([](int x) { return x; }, 3).result() == 3);
  CHECK_THROWS_AS(pool.resize(0), std::invalid_argument);
  CHECK_THROWS_AS(pool.resize(5), std::invalid_argument);
  pool.resize(3);
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 3); }));
}

TEST_CASE("resize from another thread while jobs run one after another: every job completes") {
  pc::pool pool;
  pool.start({.workers = 1, .max_workers = 3});
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0}, done{0};
  std::thread load([&] {
    while (!stop) {
      try {
        pool.job([](int x) { return x; }, 1).result();
        ++done;
      } catch (...) {
        ++failed;
      }
    }
  });
  bool grew = true;
  for (int i = 0; i < 100 && grew; ++i) {
    pool.resize(3);  // new processes on new channels while the pool's thread reads results
    grew = test::eventually([&] { return test::all_ready(pool, 3); });
    pool.resize(1);
  }
  stop = true;
  load.join();
  CHECK(grew);
  CHECK(failed == 0);
  CHECK(done > 0);
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
  pool.replace_workers();
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 3, before); }, 10s));
  stop = true;
  load.join();
  CHECK(failed == 0);
  CHECK(done > 0);
  CHECK(pool.stats().recycled == 3);
  CHECK(pool.stats().respawns == 0);
}

TEST_CASE("a timeout under a second fires on time, with the default tick") {
  pc::pool pool;
  pool.start({.workers = 1, .kill_grace = 50ms});
  // Let the pool's thread fall into its long idle sleep first.
  CHECK(pool.job([](int x) { return x; }, 1).result() == 1);
  std::this_thread::sleep_for(50ms);  // wait-ok: the pool's thread must be asleep for this to test anything
  const auto t0 = std::chrono::steady_clock::now();
  auto late = pool.job(&sleep_ms, 5'000, {.timeout = 150ms});
  REQUIRE(late.wait_for(800ms));
  CHECK_THROWS_AS(late.result(), pc::job_timeout);
  CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
}

TEST_CASE("cancel takes back a queued job, and cannot take one a worker has") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto running = pool.job(&sleep_ms, 2000);  // holds the one worker while we cancel
  running.worker();
  std::vector<pc::job_handle<int>> queued;
  for (int i = 0; i < 100; ++i) queued.push_back(pool.job([](int x) { return x; }, i));
  CHECK_FALSE(running.cancel());
  for (int i = 0; i < 100; i += 2) CHECK(queued[static_cast<std::size_t>(i)].cancel());
  CHECK_FALSE(queued[0].cancel());  // once
  // Swept out of the queue on the pool thread's next pass (at the latest after its 1 s idle sleep).
  REQUIRE(test::eventually([&] { return pool.stats().queued == 50; }, 1500ms));
  CHECK(running.result() == 2000);
  for (int i = 0; i < 100; ++i) {
    auto& j = queued[static_cast<std::size_t>(i)];
    REQUIRE(j.wait_for(5s));
    if (i % 2 == 0)
      CHECK_THROWS_AS(j.result(), pc::job_cancelled);
    else
      CHECK(j.result() == i);
  }
  CHECK(pool.workers()[0].done == 51);
}

namespace {

const std::string own_text = "the job's own line\n";

std::string file_text(const std::string& path) {
  std::string out;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
    std::fclose(f);
  }
  return out;
}

// Opens a log the job keeps open (as a daemonized library would) and writes its line.
int open_log_and_write(const std::string& path) {
  const int log = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log < 0) return -1;
  return static_cast<int>(::write(log, own_text.data(), own_text.size()));
}

// What daemon-style code does first: close what it did not open.
int closes_low_fds_and_logs(const std::string& path) {
  for (int fd = 3; fd < 1024; ++fd) ::close(fd);
  return open_log_and_write(path);
}

// Worse: close everything, then put the log on every number that was open before.
int takes_over_every_fd(const std::string& path) {
  std::vector<int> numbers;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.' && std::atoi(e->d_name) > 3) numbers.push_back(std::atoi(e->d_name));
    ::closedir(d);
  }
  ::close_range(3, ~0U, 0);
  const int written = open_log_and_write(path);  // lands on fd 3
  for (int n : numbers) ::dup2(3, n);            // fails above the soft RLIMIT_NOFILE: fine
  return written;
}

// Runs `job`, then jobs that take long enough for the pool's thread to fall asleep,
// so each one's result must ring the worker's doorbell. Returns the worker exits seen.
std::vector<pc::worker_exit> run_fd_thief(int (*job)(const std::string&), bool watch_rss) {
  const std::string path = temp_path("fd-log");
  ::unlink(path.c_str());
  std::mutex m;
  std::vector<pc::worker_exit> exits;
  {
    pc::pool pool;
    pool.on_worker_exit([&](const pc::worker_exit& e) {
      std::lock_guard lock(m);
      exits.push_back(e);
    });
    // max_worker_rss: the worker also keeps /proc/self/statm open and reads it after each job.
    pool.start({.workers = 1, .max_worker_rss = watch_rss ? std::size_t{1} << 30 : 0});
    auto thief = pool.job(job, path);
    REQUIRE(thief.wait_for(5s));
    try {
      const int written = thief.result();
      CHECK(written == static_cast<int>(own_text.size()));
    } catch (const pc::worker_lost& e) {
      CHECK(e.exit_status() == 74);  // the worker noticed its fds were gone and left
    }
    // A lost wakeup costs a job the pool thread's 1 s idle wake: ten of them would take 10 s.
    const auto until = std::chrono::steady_clock::now() + 3s;
    for (int i = 0; i < 10; ++i) {
      auto j = pool.job(&sleep_ms, 5);
      if (!j.wait_for(std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()))) {
        FAIL_CHECK("job " << i << " after the fd thief stalled");
        break;
      }
      CHECK(j.result() == 5);
    }
    CHECK(file_text(path) == own_text);
    pool.free();
  }
  ::unlink(path.c_str());
  std::lock_guard lock(m);
  return exits;
}

}  // namespace

TEST_CASE("a job that closes fds 3..1023 and opens a file: the worker never writes into it, and no job stalls") {
  rlimit files{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &files) == 0);
  // With room above 1024 the worker's own fds are there, out of the loop's reach: it lives on.
  const bool room_above = files.rlim_max >= 1024 + 16;
  for (bool watch_rss : {false, true}) {
    CAPTURE(watch_rss);
    for (const auto& e : run_fd_thief(&closes_low_fds_and_logs, watch_rss))
      if (room_above) CHECK_MESSAGE(e.reason == pc::exit_reason::stopped, "the worker died: status " << e.exit_status);
  }
}

TEST_CASE("a job that puts its file on every fd the worker had costs its worker (exit 74), never the file") {
  for (bool watch_rss : {false, true}) {
    CAPTURE(watch_rss);
    const auto exits = run_fd_thief(&takes_over_every_fd, watch_rss);
    const auto died = std::count_if(exits.begin(), exits.end(), [](const auto& e) { return e.reason == pc::exit_reason::died; });
    CHECK(died == 1);
    for (const auto& e : exits)
      if (e.reason == pc::exit_reason::died) CHECK(e.exit_status == 74);
  }
}

namespace {

#ifdef __SANITIZE_THREAD__
constexpr bool under_tsan = true;
#else
constexpr bool under_tsan = false;
#endif

struct nested_outcome {
  int sum = 0;
  bool own_processes = false;  // the inner fork server is our child, its workers its children
  template <class A>
  void serialize(A& a) {
    a(sum, own_processes);
  }
};

// A job that runs a pool of its own, inside a worker.
nested_outcome runs_a_pool(int jobs) {
  nested_outcome out;
  pc::pool inner;
  inner.start({.workers = 2});
  const pid_t server = inner.stats().fork_server;
  out.own_processes = test::children().count(server) == 1;
  for (const auto& w : inner.workers()) out.own_processes &= test::children_of(server).count(w.pid) == 1;
  std::vector<pc::job_handle<int>> handles;
  for (int i = 1; i <= jobs; ++i) handles.push_back(inner.job([](int x) { return x * x; }, i));
  for (auto& h : handles) out.sum += h.result();
  inner.free();
  return out;
}

int squares_up_to(int n) { return n * (n + 1) * (2 * n + 1) / 6; }

}  // namespace

// ThreadSanitizer cannot start a thread in the fork of a multithreaded process ("dup thread with used id", exit 66).
TEST_CASE("a job can start a pool of its own inside its worker, run jobs on it and free it" * doctest::skip(under_tsan)) {
  pc::pool pool;
  pool.start({.workers = 1});
  const pid_t worker = pool.workers()[0].pid;
  for (int round = 0; round < 2; ++round) {  // twice in the same worker: free() leaves it able to start again
    auto j = pool.job(&runs_a_pool, 20);
    REQUIRE(j.wait_for(10s));
    const nested_outcome got = j.result();
    CHECK(got.sum == squares_up_to(20));
    CHECK(got.own_processes);
    CHECK(j.worker().pid == worker);
  }
  // The outer pool's rings are untouched: its worker still serves it.
  CHECK(pool.job([](int x) { return x + 1; }, 41).result() == 42);
  CHECK(pool.workers()[0].pid == worker);
  CHECK(pool.stats().respawns == 0);
}

TEST_CASE("nested pools in a worker with concurrency 2, next to a plain job" * doctest::skip(under_tsan)) {
  pc::pool pool;
  pool.start({.workers = 1, .concurrency = 2});
  auto a = pool.job(&runs_a_pool, 10);
  auto b = pool.job(&runs_a_pool, 30);
  auto plain = pool.job([](int x) { return x * 3; }, 5);
  REQUIRE(a.wait_for(15s));
  REQUIRE(b.wait_for(15s));
  CHECK(a.result().sum == squares_up_to(10));
  CHECK(b.result().sum == squares_up_to(30));
  CHECK(a.result().own_processes);
  CHECK(b.result().own_processes);
  CHECK(plain.result() == 15);
  CHECK(pool.job([](int x) { return x; }, 7).result() == 7);
  CHECK(pool.stats().respawns == 0);
}
