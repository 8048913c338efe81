// shared_bytes: a job reads and writes the caller's memory in place; the memory goes
// when the last side lets go (a dead worker and free() included); bad handles fail.

#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

namespace {

std::uint64_t sum_then_increment(const pc::shared_bytes& b) {
  std::uint64_t sum = 0;
  for (auto& x : b.as<std::uint8_t>()) sum += x++;
  return sum;
}

pc::shared_bytes echo(const pc::shared_bytes& b) { return b; }

pc::shared_bytes make_own(int n) { return pc::shared_bytes(static_cast<std::size_t>(n)); }

bool is_empty(const pc::shared_bytes& b) { return b.empty() && b.data() == nullptr; }

// Maps the bytes, writes its pid into them so the caller knows, and waits to be killed.
int hold_forever(const pc::shared_bytes& b) {
  const pid_t me = ::getpid();
  std::memcpy(b.data(), &me, sizeof me);
  test::blocks_forever(0);
  return 0;
}

// Travels as a shared_bytes handle whose token is one off.
struct forged {
  pc::shared_bytes bytes;
  template <class A>
  void save(A& a) const {
    auto h = bytes.handle();
    h.token ^= 1;
    a(h);
  }
  template <class A>
  void load(A& a) {
    a(bytes);
  }
};

forged forge_back(const pc::shared_bytes& b) { return {b}; }
int length_of(const forged& f) { return static_cast<int>(f.bytes.size()); }

std::string memfd_of(const pc::shared_bytes& b) {
  const auto h = b.handle();
  char name[64];
  std::snprintf(name, sizeof name, "memfd:parallelcode-%016llx-%016llx", static_cast<unsigned long long>(h.id),
                static_cast<unsigned long long>(h.token));
  return name;
}

// True if process pid maps the memfd or has it open.
bool holds(pid_t pid, const std::string& memfd) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream maps(proc + "/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.find(memfd) != std::string::npos) return true;
  for (const auto& fd : test::entries_of(proc + "/fd")) {
    char target[256] = {};
    const ssize_t n = ::readlink((proc + "/fd/" + fd).c_str(), target, sizeof target - 1);
    if (n > 0 && std::string(target, static_cast<std::size_t>(n)).find(memfd) != std::string::npos) return true;
  }
  return false;
}

std::vector<pid_t> pool_processes(const pc::pool& pool) {
  auto out = test::pids(pool.workers());
  out.push_back(pool.stats().fork_server);
  return out;
}

bool held_anywhere(const pc::pool& pool, const std::string& memfd) {
  if (holds(::getpid(), memfd)) return true;
  for (pid_t pid : pool_processes(pool))
    if (holds(pid, memfd)) return true;
  return false;
}

}  // namespace

TEST_CASE("a job reads the caller's bytes in place and the caller sees what it writes") {
  pc::pool pool;
  pool.start({.workers = 2});
  pc::shared_bytes b(1 << 20);
  auto bytes = b.as<std::uint8_t>();
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 7);
  const std::uint64_t expect = std::accumulate(bytes.begin(), bytes.end(), std::uint64_t{0});
  auto job = pool.job(&sum_then_increment, b);
  REQUIRE(job.wait_for(30s));
  CHECK(job.result() == expect);
  for (std::size_t i = 0; i < bytes.size(); i += 4099) CHECK(bytes[i] == static_cast<std::uint8_t>(i * 7 + 1));
}

TEST_CASE("a job hands back the shared_bytes it was given as the caller's own memory") {
  pc::pool pool;
  pool.start({.workers = 1});
  pc::shared_bytes b(4096);
  auto job = pool.job(&echo, b);
  REQUIRE(job.wait_for(30s));
  CHECK(job.result().data() == b.data());
  CHECK(job.result().size() == 4096);
}

TEST_CASE("an empty shared_bytes travels as an empty one") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto job = pool.job(&is_empty, pc::shared_bytes());
  REQUIRE(job.wait_for(30s));
  CHECK(job.result());
}

TEST_CASE("a shared_bytes a worker made itself fails its job with payload_error and the worker serves on") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto job = pool.job(&make_own, 64);
  REQUIRE(job.wait_for(30s));
  CHECK_THROWS_AS(job.result(), pc::payload_error);
  CHECK_THROWS_WITH(job.result(), doctest::Contains("the job was not given it"));
  pc::shared_bytes b(16);
  auto next = pool.job(&echo, b);
  REQUIRE(next.wait_for(30s));
  CHECK(next.result().data() == b.data());
}

TEST_CASE("a forged handle fails the job with payload_error, whichever side forged it") {
  pc::pool pool;
  pool.start({.workers = 1});
  pc::shared_bytes b(4096);
  auto from_worker = pool.job(&forge_back, b);
  REQUIRE(from_worker.wait_for(30s));
  CHECK_THROWS_AS(from_worker.result(), pc::payload_error);
  auto to_worker = pool.job(&length_of, forged{b});
  REQUIRE(to_worker.wait_for(30s));
  CHECK_THROWS_AS(to_worker.result(), pc::payload_error);
  CHECK_THROWS_WITH(to_worker.result(), doctest::Contains("its fd is not that memory"));
  auto fine = pool.job(&sum_then_increment, b);
  REQUIRE(fine.wait_for(30s));
  CHECK(fine.result() == 0);
}

TEST_CASE("a worker killed while it maps a shared_bytes leaves no copy of it once the caller lets go") {
  pc::pool pool;
  pool.start({.workers = 1});
  std::string memfd;
  {
    pc::shared_bytes b(1 << 16);
    memfd = memfd_of(b);
    auto job = pool.job(&hold_forever, b);
    const pid_t worker = job.worker().pid;
    pid_t written = 0;
    REQUIRE(test::eventually([&] {
      std::memcpy(&written, b.data(), sizeof written);
      return written == worker;
    }));
    CHECK(holds(worker, memfd));
    REQUIRE(pool.kill(worker));
    REQUIRE(job.wait_for(30s));
    CHECK_THROWS_AS(job.result(), pc::worker_lost);
    CHECK(test::process_gone(worker));
    CHECK(holds(::getpid(), memfd));  // ours still
  }
  CHECK_FALSE(held_anywhere(pool, memfd));
}

TEST_CASE("free() lets go of the shared_bytes of the jobs it cancels") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto busy = pool.job(&test::blocks_forever, 0);
  std::string memfd;
  pc::job_handle<std::uint64_t> queued;
  {
    pc::shared_bytes b(1 << 16);
    memfd = memfd_of(b);
    queued = pool.job(&sum_then_increment, b);
  }
  CHECK(holds(::getpid(), memfd));  // the queued job keeps it
  pool.free();
  CHECK_THROWS_AS(queued.result(), pc::job_cancelled);
  CHECK_FALSE(holds(::getpid(), memfd));
}

TEST_CASE("a fork server started after a shared_bytes was made holds none of it") {
  pc::shared_bytes b(1 << 16);
  const std::string memfd = memfd_of(b);
  pc::pool pool;
  pool.start({.workers = 2});
  for (pid_t pid : pool_processes(pool)) CHECK_FALSE(holds(pid, memfd));
  auto job = pool.job(&sum_then_increment, b);
  REQUIRE(job.wait_for(30s));
  CHECK(job.result() == 0);
  for (pid_t pid : pool_processes(pool)) CHECK_FALSE(holds(pid, memfd));  // the job's mapping went with it
}

TEST_CASE("a map over shared_bytes items gives each job its own bytes") {
  pc::pool pool;
  pool.start({.workers = 2});
  std::vector<pc::shared_bytes> items;
  for (int i = 0; i < 20; ++i) {
    items.emplace_back(4096);
    items.back().as<std::uint8_t>()[0] = static_cast<std::uint8_t>(i);
  }
  auto m = pool.map(&sum_then_increment, items, {.chunk_size = 3});
  REQUIRE(m.wait_for(30s));
  const auto sums = std::move(m).results();
  REQUIRE(sums.size() == items.size());
  for (int i = 0; i < 20; ++i) {
    CHECK(sums[static_cast<std::size_t>(i)] == static_cast<std::uint64_t>(i));
    CHECK(items[static_cast<std::size_t>(i)].as<std::uint8_t>()[0] == i + 1);
  }
}
