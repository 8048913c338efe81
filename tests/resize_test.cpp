// A running pool changes size and ends: resize, drain, cancel, and a start of 600 workers.

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

TEST_CASE("drain lets queued and running jobs finish, refuses new ones, then frees the pool") {
  pc::pool pool;
  pool.start({.workers = 2});
  std::vector<pc::job_handle<int>> jobs;
  for (int i = 0; i < 6; ++i) jobs.push_back(pool.job(&test::sleep_ms, 50));
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
  auto forever = pool.job(&test::blocks_forever, 0);
  forever.worker();
  CHECK_FALSE(pool.drain(100ms));
  REQUIRE(forever.wait_for(1s));
  CHECK_THROWS_AS(forever.result(), pc::job_cancelled);
  CHECK(test::children().empty());
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
  auto slow = pool.job(&test::sleep_ms, 300);
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

TEST_CASE("cancel takes back a queued job, and cannot take one a worker has") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto running = pool.job(&test::sleep_ms, 2000);  // holds the one worker while we cancel
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
