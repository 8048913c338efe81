// Crash loops and a dead fork server: a worker_init that keeps aborting makes the pool
// back off rather than fork without end; a killed fork server is replaced.

#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <system_error>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

TEST_CASE("a worker_init that aborts in every new worker triggers backoff: forks stay bounded, the pool reports it, and recovers") {
  test::crash_flag = test::temp_path("crash");
  ::unlink(test::crash_flag.c_str());
  std::atomic<unsigned> loops{0};
  std::atomic<long long> longest_ms{0};
  pc::pool pool;  // after what its callbacks touch: they may fire until it is destroyed
  pool.on_crash_loop([&](const pc::worker_info&, unsigned, std::chrono::milliseconds delay) {
    ++loops;
    if (delay.count() > longest_ms) longest_ms = delay.count();
  });
  pool.start({.workers = 2, .worker_init = &test::abort_if_flagged});
  REQUIRE(pool.job([](int x) { return x; }, 1).result() == 1);

  test::touch(test::crash_flag);
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

  ::unlink(test::crash_flag.c_str());
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 2); }, 10s));
  REQUIRE(waiting.wait_for(5s));
  CHECK(waiting.result() == 15);
}

TEST_CASE("a worker_init that always aborts makes start() fail at once, naming the signal") {
  test::crash_flag = test::temp_path("crash-start");
  test::touch(test::crash_flag);
  pc::pool pool;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    pool.start({.workers = 2, .worker_init = &test::abort_if_flagged});
    FAIL("start() should have thrown");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("SIGABRT") != std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  ::unlink(test::crash_flag.c_str());
  CHECK(test::children().empty());
}

TEST_CASE("killing the fork server: the pool starts a new one and respawns its workers; queued jobs run") {
  std::atomic<int> exits{0};
  pc::pool pool;  // after what its callbacks touch: they may fire until it is destroyed
  pool.on_worker_exit([&](const pc::worker_exit&) { ++exits; });
  pool.start({.workers = 2});
  const pid_t old_server = pool.stats().fork_server;
  const auto old_pids = test::pids(pool.workers());
  auto a = pool.job(&test::blocks_forever, 0);
  auto b = pool.job(&test::blocks_forever, 1);
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
