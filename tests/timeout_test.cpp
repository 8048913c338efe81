// Timeouts: a job past its deadline gets job_timeout; its worker gets SIGTERM, then
// SIGKILL after the grace, and a replacement; the worker's other jobs fail with it.

#include <doctest/doctest.h>

#include <signal.h>

#include <atomic>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

TEST_CASE("a job that runs past its timeout gets job_timeout; the pool is back to N workers and the next job runs") {
  pc::pool pool;
  pool.start({.workers = 2, .job_timeout = 200ms, .kill_grace = 100ms});
  auto slow = pool.job(&test::sleep_ms, 10'000);
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
  CHECK(pool.job(&test::sleep_ms, 10).result() == 10);
}

TEST_CASE("a per-job timeout overrides the pool's, and 0 turns it off") {
  pc::pool pool;
  pool.start({.workers = 2, .job_timeout = 100ms, .kill_grace = 50ms});
  auto unlimited = pool.job(&test::sleep_ms, 300, {.timeout = 0ms});
  auto shorter = pool.job(&test::sleep_ms, 10'000, {.timeout = 50ms});
  CHECK(unlimited.result() == 300);
  CHECK_THROWS_AS(shorter.result(), pc::job_timeout);
}

TEST_CASE("the other jobs of a timed-out worker fail with worker_lost") {
  pc::pool pool;
  pool.start({.workers = 1, .concurrency = 2, .kill_grace = 50ms});
  auto bystander = pool.job(&test::blocks_forever, 0);
  auto late = pool.job(&test::sleep_ms, 10'000, {.timeout = 100ms});
  CHECK_THROWS_AS(late.result(), pc::job_timeout);
  REQUIRE(bystander.wait_for(5s));
  CHECK_THROWS_AS(bystander.result(), pc::worker_lost);
}

TEST_CASE("a SIGTERM the worker ignores is followed by SIGKILL after the grace") {
  pc::pool pool;
  pool.start({.workers = 1, .kill_grace = 100ms});
  auto stubborn = pool.job([](int ms) {
    ::signal(SIGTERM, SIG_IGN);
    return test::sleep_ms(ms);
  }, 10'000, {.timeout = 100ms});
  const pid_t pid = stubborn.worker().pid;
  CHECK_THROWS_AS(stubborn.result(), pc::job_timeout);
  CHECK(test::process_gone(pid, 3000ms));
}

TEST_CASE("a timeout under a second fires on time, with the default tick") {
  pc::pool pool;
  pool.start({.workers = 1, .kill_grace = 50ms});
  // Let the pool's thread fall into its long idle sleep first.
  CHECK(pool.job([](int x) { return x; }, 1).result() == 1);
  std::this_thread::sleep_for(50ms);  // wait-ok: the pool's thread must be asleep for this to test anything
  const auto t0 = std::chrono::steady_clock::now();
  auto late = pool.job(&test::sleep_ms, 5'000, {.timeout = 150ms});
  REQUIRE(late.wait_for(800ms));
  CHECK_THROWS_AS(late.result(), pc::job_timeout);
  CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
}
