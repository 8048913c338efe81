// Worker events: on_worker_spawn and on_worker_exit name each process that came up or
// went, and how it ended.

#include <doctest/doctest.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

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
