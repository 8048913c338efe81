// Retries: a job whose worker died runs again only if asked (retries), on another
// worker when it can, at most 1 + retries times, and never after it threw or timed out.

#include <doctest/doctest.h>

#include <signal.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

TEST_CASE("with retries = 2, a job whose first worker is killed completes on its second try") {
  pc::pool pool;
  pool.start({.workers = 2});
  const std::string marker = test::temp_path("retry");
  test::touch(marker);
  std::atomic<unsigned> attempt{0};
  auto j = pool.job(&test::blocks_first_time, marker, {.retries = 2});
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
  auto late = pool.job(&test::sleep_ms, 10'000, {.timeout = 100ms, .retries = 3});
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

TEST_CASE("a worker killed with jobs handed ahead: those it never took run elsewhere, not as retries") {
  pc::pool pool;
  pool.start({.workers = 2});
  for (int i = 0; i < 10; ++i) pool.job([](int x) { return x; }, i).result();
  auto victim = pool.job(&test::blocks_forever, 0);
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

TEST_CASE("a retry does not wait for a stuck worker: it runs on the slot it died on if that one is free") {
  pc::pool pool;
  pool.start({.workers = 2});
  auto stuck = pool.job(&test::spins_forever, 0);  // holds one slot for good, no timeout
  const std::string marker = test::temp_path("retry-stuck");
  test::touch(marker);
  auto retried = pool.job(&test::blocks_first_time, marker, {.retries = 1});
  REQUIRE(test::eventually([&] { return ::access(marker.c_str(), F_OK) != 0; }));
  REQUIRE(pool.kill(retried.worker().pid));
  REQUIRE(retried.wait_for(5s));
  CHECK(retried.result() == 7);
  CHECK(pool.drain(100ms) == false);  // only `stuck` is left, cancelled
  CHECK_THROWS_AS(stuck.result(), pc::job_cancelled);
}
