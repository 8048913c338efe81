// Leaks: once a pool is freed (by free(), its destructor, drain() or a failed
// start()), nothing it opened is left: no file descriptor, shared mapping,
// thread, process or /dev/shm entry, and under LeakSanitizer no heap block.

#include <doctest/doctest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"

#ifdef PARALLELCODE_TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

using namespace std::chrono_literals;
namespace pc = parallelcode;

namespace {

// Everything of this process a pool could leave behind, seen from /proc.
struct snapshot {
  std::map<int, std::string> fds;    // fd -> what it points at
  std::set<std::string> mappings;    // shared or file-backed mappings, as "perms offset path"
  int threads = 0;
  std::set<pid_t> children;          // any state, zombies too
  std::set<std::string> shm;         // /dev/shm

  static snapshot take() {
    snapshot s;
    s.fds = test::open_fds();
    // Private anonymous mappings come and go with malloc and with glibc's cache of
    // thread stacks; what a pool maps is shared (its region) or names a file.
    std::ifstream maps("/proc/self/maps");
    for (std::string line; std::getline(maps, line);) {
      std::istringstream in(line);
      std::string range, perms, offset, dev, inode, path;
      in >> range >> perms >> offset >> dev >> inode;
      std::getline(in >> std::ws, path);
      const bool shared = perms.size() == 4 && perms[3] == 's';
      if (shared || (!path.empty() && path[0] == '/') || path.find("memfd:") == 0)
        s.mappings.insert(range + " " + perms + " " + path);
    }
    s.threads = static_cast<int>(test::entries_of("/proc/self/task").size());
    // Children by their parent pid, which also finds zombies and children of any thread.
    const pid_t self = ::getpid();
    for (const auto& name : test::entries_of("/proc")) {
      const pid_t pid = std::atoi(name.c_str());
      if (pid <= 0) continue;
      std::ifstream stat("/proc/" + name + "/stat");
      std::string line;
      if (!std::getline(stat, line)) continue;
      const auto close = line.rfind(')');  // the name may hold spaces and parentheses
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 1));
      char state;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == self) s.children.insert(pid);
    }
    s.shm = test::dev_shm();
    return s;
  }
};

// What the process has before a pool: the baseline every case compares with. A
// sanitizer's runtime may start a thread of its own with the first one the process
// makes (TSan's background thread): make one first, so the baseline has it.
snapshot baseline() {
  static std::once_flag first;
  std::call_once(first, [] { std::thread([] {}).join(); });
  return snapshot::take();
}

std::string describe(const std::map<int, std::string>& fds) {
  std::string out;
  for (const auto& [fd, target] : fds) out += " " + std::to_string(fd) + "->" + target;
  return out;
}

template <class Set>
Set minus(const Set& a, const Set& b) {
  Set out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::inserter(out, out.end()));
  return out;
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += "\n  " + x;
  return out;
}

// The process is back to `before`, within a deadline: processes end and threads
// go asynchronously (a worker the fork server killed may still be exiting).
void check_nothing_left(const snapshot& before, std::chrono::milliseconds deadline = 5000ms) {
  snapshot now;
  test::eventually([&] {
    now = snapshot::take();
    return now.fds == before.fds && now.mappings == before.mappings && now.threads == before.threads &&
           now.children == before.children && now.shm == before.shm;
  }, deadline);
  CHECK_MESSAGE(now.fds == before.fds, "fds before:" << describe(before.fds) << "\nfds after:" << describe(now.fds));
  CHECK_MESSAGE(now.mappings == before.mappings, "new mappings:" << join(minus(now.mappings, before.mappings))
                                                                 << "\ngone mappings:" << join(minus(before.mappings, now.mappings)));
  CHECK(now.threads == before.threads);
  CHECK_MESSAGE(now.children == before.children, "children: " << now.children.size() << " now, "
                                                               << before.children.size() << " before");
  CHECK_MESSAGE(now.shm == before.shm, "new in /dev/shm:" << join(minus(now.shm, before.shm)));
}

void check_gone(const std::set<pid_t>& pids) {
  for (pid_t pid : pids) CHECK_MESSAGE(test::process_gone(pid, 5000ms), "pid " << pid << " outlived the pool");
}

#ifdef PARALLELCODE_TEST_ASAN
// Runs LeakSanitizer now: heap blocks nothing points at any more. Objects still
// reachable (the default pool, doctest's own) are no leaks.
void check_no_heap_leak() { CHECK(__lsan_do_recoverable_leak_check() == 0); }
#else
void check_no_heap_leak() {}
#endif

// Every pid a pool ever had: workers from its spawn events, fork servers from its stats.
struct pid_log {
  std::mutex m;
  std::set<pid_t> pids;
  void add(pid_t p) {
    std::lock_guard lock(m);
    if (p > 0) pids.insert(p);
  }
  // The pool's fork server and its workers now.
  void add_processes(const pc::pool& pool) {
    add(pool.stats().fork_server);
    for (const auto& w : pool.workers()) add(w.pid);
  }
  std::set<pid_t> all() {
    std::lock_guard lock(m);
    return pids;
  }
};

// What every case puts a pool through: jobs of each outcome, a kill from the pool
// and one from outside (both respawned), payloads larger than a ring both ways,
// and a running and a queued job when it is freed.
void exercise(pc::pool& pool, unsigned workers, pid_log& seen) {
  seen.add_processes(pool);
  for (int i = 0; i < 50; ++i) REQUIRE(pool.job([](int x) { return x + 1; }, i).result() == i + 1);

  auto victim = pool.job(&test::blocks_forever, 0);
  const pid_t first = victim.worker().pid;
  REQUIRE(pool.kill(first));
  REQUIRE(victim.wait_for(5s));
  CHECK_THROWS_AS(victim.result(), pc::worker_lost);
  REQUIRE(test::eventually([&] { return test::all_ready(pool, workers, {first}); }));

  auto outside = pool.job(&test::blocks_forever, 0);
  const pid_t second = outside.worker().pid;
  REQUIRE(::kill(second, SIGKILL) == 0);
  REQUIRE(outside.wait_for(5s));
  CHECK_THROWS_AS(outside.result(), pc::worker_lost);
  REQUIRE(test::eventually([&] { return test::all_ready(pool, workers, {first, second}); }));
  for (const auto& w : pool.workers()) seen.add(w.pid);

  std::vector<unsigned char> big(3 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<unsigned char>(i * 7);
  auto echoed = pool.job([](std::vector<unsigned char> v) {
    std::reverse(v.begin(), v.end());
    return v;
  }, big);
  REQUIRE(echoed.wait_for(30s));
  std::reverse(big.begin(), big.end());
  CHECK(echoed.result() == big);

  CHECK_THROWS_AS(pool.job([](int) -> int { throw std::runtime_error("no"); }, 0).result(), pc::job_failed);
  CHECK_THROWS_AS(pool.job(&test::sleep_ms, 10'000, {.timeout = 50ms}).result(), pc::job_timeout);
  CHECK_THROWS_AS(pool.job([](int n) { return std::string(static_cast<std::size_t>(n), 'x'); }, 9 << 20).result(),
                  pc::payload_error);
  REQUIRE(test::eventually([&] { return test::all_ready(pool, workers); }));
  for (const auto& w : pool.workers()) seen.add(w.pid);

  // Left in flight for free() to cancel.
  auto running = pool.job(&test::blocks_forever, 1);
  running.worker();
  for (const auto& w : pool.workers()) seen.add(w.pid);
  for (unsigned i = 0; i < 2 * workers; ++i) pool.job(&test::blocks_forever, 2);
  seen.add(pool.stats().fork_server);
}

}  // namespace

TEST_CASE("free leaves no file descriptor, mapping, thread, process or shared memory behind") {
  const snapshot before = baseline();
  pid_log seen;
  {
    pc::pool pool;
    pool.on_worker_spawn([&](const pc::worker_info& w) { seen.add(w.pid); });
    pool.start({.workers = 3, .max_payload = 8 << 20});
    const snapshot running = snapshot::take();
    CHECK(running.fds.size() > before.fds.size());            // the detection sees the pool's fds
    CHECK(running.mappings.size() > before.mappings.size());  // and its shared region
    CHECK(running.children.size() == before.children.size() + 1);  // the fork server
    exercise(pool, 3, seen);
    pool.free();
    check_nothing_left(before);
    check_gone(seen.all());
  }
  check_nothing_left(before);
  check_no_heap_leak();
}

TEST_CASE("starting and freeing a pool 20 times leaves the fds, mappings and threads as they were") {
  const snapshot before = baseline();
  pc::pool pool;
  for (int round = 0; round < 20; ++round) {
    pid_log seen;
    pool.start({.workers = 2});
    REQUIRE(pool.job([](int x) { return x * 2; }, round).result() == 2 * round);
    const pid_t victim = pool.workers()[0].pid;
    seen.add(victim);
    seen.add(pool.stats().fork_server);
    REQUIRE(pool.kill(victim));
    REQUIRE(test::eventually([&] { return test::all_ready(pool, 2, {victim}); }));
    for (const auto& w : pool.workers()) seen.add(w.pid);
    pool.free();
    CAPTURE(round);
    const snapshot now = snapshot::take();
    CHECK_MESSAGE(now.fds.size() == before.fds.size(), "fds after round " << round << ":" << describe(now.fds));
    check_nothing_left(before);
    check_gone(seen.all());
  }
  check_no_heap_leak();
}

TEST_CASE("the default pool, started and freed through parallelcode::start and free, leaves nothing behind") {
  const snapshot before = baseline();
  pid_log seen;
  for (int round = 0; round < 3; ++round) {
    pc::start({.workers = 2});
    seen.add(pc::default_pool().stats().fork_server);
    for (const auto& w : pc::workers()) seen.add(w.pid);
    auto j = pc::job([](int x) { return x + 1; }, 41);
    CHECK(j.result() == 42);
    const pid_t victim = pc::workers()[1].pid;
    REQUIRE(pc::kill(victim));
    REQUIRE(test::eventually([&] { return test::all_ready(pc::default_pool(), 2, {victim}); }));
    for (const auto& w : pc::workers()) seen.add(w.pid);
    auto left = pc::job(&test::blocks_forever, 0);
    left.worker();
    pc::free();
    REQUIRE(left.wait_for(5s));
    CHECK_THROWS_AS(left.result(), pc::job_cancelled);
    CHECK(pc::workers().empty());
    check_nothing_left(before);
  }
  check_gone(seen.all());
  check_no_heap_leak();
}

TEST_CASE("a pool destroyed without free() leaves nothing behind") {
  const snapshot before = baseline();
  pid_log seen;
  {
    pc::pool pool;
    pool.on_worker_spawn([&](const pc::worker_info& w) { seen.add(w.pid); });
    pool.start({.workers = 2, .max_payload = 8 << 20});
    exercise(pool, 2, seen);
  }
  check_nothing_left(before);
  check_gone(seen.all());
  check_no_heap_leak();
}

TEST_CASE("drain() leaves nothing behind, whether its jobs finish or it gives up on them") {
  const snapshot before = baseline();
  pid_log seen;
  {
    pc::pool pool;
    pool.start({.workers = 2});
    seen.add_processes(pool);
    auto j = pool.job(&test::sleep_ms, 20);
    CHECK(pool.drain(10s));
    CHECK(j.result() == 20);
    check_nothing_left(before);

    pool.start({.workers = 2});
    seen.add_processes(pool);
    auto stuck = pool.job(&test::blocks_forever, 0);
    stuck.worker();
    CHECK_FALSE(pool.drain(50ms));
    CHECK_THROWS_AS(stuck.result(), pc::job_cancelled);
    check_nothing_left(before);
  }
  check_gone(seen.all());
  check_no_heap_leak();
}

TEST_CASE("a fork server killed and replaced leaves nothing of it behind once the pool is freed") {
  const snapshot before = baseline();
  pid_log seen;
  {
    pc::pool pool;
    pool.on_worker_spawn([&](const pc::worker_info& w) { seen.add(w.pid); });
    pool.start({.workers = 2});
    for (int round = 0; round < 3; ++round) {
      const pid_t server = pool.stats().fork_server;
      const auto old = test::pids(pool.workers());
      seen.add(server);
      REQUIRE(::kill(server, SIGKILL) == 0);
      REQUIRE(test::eventually([&] { return pool.stats().fork_server != server && test::all_ready(pool, 2, old); },
                               10s));
      seen.add(pool.stats().fork_server);
      CHECK(pool.job([](int x) { return x; }, round).result() == round);
    }
    CHECK(pool.stats().fork_server_restarts == 3);
    // While it runs, only the live fork server's fds are held: the dead ones' went with them.
    const snapshot running = snapshot::take();
    pool.free();
    pool.start({.workers = 2});
    seen.add_processes(pool);
    const snapshot fresh = snapshot::take();
    CHECK_MESSAGE(running.fds.size() == fresh.fds.size(),
                  "after 3 fork server restarts:" << describe(running.fds) << "\na fresh pool:" << describe(fresh.fds));
    pool.free();
    check_nothing_left(before);
  }
  check_gone(seen.all());
  check_no_heap_leak();
}

TEST_CASE("a start() that fails leaves nothing behind") {
  test::crash_flag = test::temp_path("crash");
  test::touch(test::crash_flag);
  const snapshot before = baseline();
  {
    pc::pool pool;
    CHECK_THROWS_AS(pool.start({.workers = 2, .worker_init = &test::abort_if_flagged}), std::system_error);
    check_nothing_left(before);
  }
  ::unlink(test::crash_flag.c_str());
  check_nothing_left(before);
  check_no_heap_leak();
}

TEST_CASE("a freed pool's processes are gone, not zombies: none is a child of ours, and none is left in the fork server's place") {
  const snapshot before = baseline();
  pc::pool pool;
  pool.start({.workers = 4});
  const pid_t server = pool.stats().fork_server;
  const auto workers = test::pids(pool.workers());
  for (pid_t w : workers) CHECK(test::children_of(server).count(w) == 1);
  pool.free();
  check_nothing_left(before);
  // Gone from /proc altogether: reaped, by the fork server or by us.
  CHECK(test::eventually([&] {
    if (::access(("/proc/" + std::to_string(server)).c_str(), F_OK) == 0) return false;
    for (pid_t w : workers)
      if (::access(("/proc/" + std::to_string(w)).c_str(), F_OK) == 0) return false;
    return true;
  }));
}

TEST_CASE("a worker whose pidfd the host could not receive is killed, never kept, and the pool recovers once fds are free") {
  pc::pool pool;
  std::mutex m;
  std::vector<pid_t> exited;
  std::vector<int> hogs;
  bool hogging = false;
  auto hog = [&] {
    for (int fd; (fd = ::dup(0)) >= 0;) hogs.push_back(fd);
  };
  pool.on_worker_exit([&](const pc::worker_exit& e) {
    std::lock_guard lock(m);
    exited.push_back(e.pid);
    if (hogging) hog();  // the dead worker's pidfd, just closed: before the pool asks for a replacement
  });
  pool.start({.workers = 1});
  const pid_t first = pool.workers()[0].pid;
  const pid_t server = pool.stats().fork_server;

  // Every fd this process may have is taken: the replacement's pidfd, passed over
  // the fork server's socket, is dropped by the kernel (MSG_CTRUNC).
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit low = saved;
  low.rlim_cur = 256;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  {
    std::lock_guard lock(m);
    hogging = true;
    hog();
    REQUIRE(errno == EMFILE);
  }
  REQUIRE(pool.kill(first));
  // Unwatched replacements are killed by the fork server and go on dying young.
  const bool replacement_killed = test::eventually([&] {
    std::lock_guard lock(m);
    return std::any_of(exited.begin(), exited.end(), [&](pid_t p) { return p != first; });
  }, 10s);
  const auto forked = test::children_of(server).size();
  {
    std::lock_guard lock(m);
    hogging = false;
    for (int fd : hogs) ::close(fd);
    hogs.clear();
  }
  ::setrlimit(RLIMIT_NOFILE, &saved);
  CHECK_MESSAGE(replacement_killed, "a replacement the pool cannot signal was kept as a worker");
  CHECK(forked <= 1);

  // Once fds are free, the next replacement is watched: it serves, and kill() reaches it.
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 1, {first}); }, 15s));
  auto job = pool.job([](int x) { return x + 1; }, 41);
  CHECK(job.result() == 42);
  const pid_t now = pool.workers()[0].pid;
  CHECK(test::children_of(server) == std::set<pid_t>{now});
  CHECK(pool.kill(now));
  CHECK(test::process_gone(now));
  pool.free();
}
