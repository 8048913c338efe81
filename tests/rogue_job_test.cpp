// Jobs that misbehave in their worker: endless loops, fds closed or taken over, a pool
// of their own. The other jobs go on, and the worker never writes into the job's files.

#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

TEST_CASE("a worker stuck in an endless loop, with no timeout, does not hold up the other jobs") {
  pc::pool pool;
  pool.start({.workers = 2});
  auto stuck = pool.job(&test::spins_forever, 0);
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
  auto stuck = pool.job(&test::spins_forever, 0);
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
  const std::string path = test::temp_path("fd-log");
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
      auto j = pool.job(&test::sleep_ms, 5);
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
TEST_CASE("a job can start a pool of its own inside its worker, run jobs on it and free it" * doctest::skip(test::under_tsan)) {
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

TEST_CASE("nested pools in a worker with concurrency 2, next to a plain job" * doctest::skip(test::under_tsan)) {
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
