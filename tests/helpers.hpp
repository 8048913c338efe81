#pragma once

// What the suites and the soak share: which sanitizer is on, the jobs they run,
// waiting on a condition with a deadline, and looking at processes, fds and
// mappings from the outside.

#include <dirent.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <parallelcode/parallelcode.hpp>

namespace test {

using namespace std::chrono_literals;

// Which sanitizer the tests were built with (GCC's macros, clang's __has_feature).
#if defined(__SANITIZE_ADDRESS__)
#define PARALLELCODE_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PARALLELCODE_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define PARALLELCODE_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PARALLELCODE_TEST_TSAN 1
#endif
#endif
#ifdef PARALLELCODE_TEST_ASAN
inline constexpr bool under_asan = true;
#else
inline constexpr bool under_asan = false;
#endif
#ifdef PARALLELCODE_TEST_TSAN
inline constexpr bool under_tsan = true;
#else
inline constexpr bool under_tsan = false;
#endif
// Under a sanitizer the heap is the sanitizer's, not glibc's.
inline constexpr bool sanitized = under_asan || under_tsan;

// Polls pred until it holds or the deadline passes; true if it held.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds deadline = 5000ms) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(200us);  // wait-ok: polling interval under a deadline
  }
  return true;
}

// True once pid has exited (a zombie counts), within the deadline.
inline bool process_gone(pid_t pid, std::chrono::milliseconds deadline = 5000ms) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  const bool gone = ::poll(&p, 1, static_cast<int>(deadline.count())) == 1;
  ::close(fd);
  return gone;
}

inline bool process_alive(pid_t pid) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return false;
  pollfd p{fd, POLLIN, 0};
  const bool exited = ::poll(&p, 1, 0) == 1;
  ::close(fd);
  return !exited;
}

// The names in a directory, "." and ".." left out; none if it cannot be read.
inline std::vector<std::string> entries_of(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') out.emplace_back(e->d_name);
    ::closedir(d);
  }
  return out;
}

// A process's children (this one's by default), from each of its threads' /proc lists.
inline std::set<pid_t> children_of(const std::string& proc) {
  std::set<pid_t> out;
  for (const auto& task : entries_of(proc + "/task")) {
    std::ifstream f(proc + "/task/" + task + "/children");
    pid_t pid;
    while (f >> pid) out.insert(pid);
  }
  return out;
}
inline std::set<pid_t> children() { return children_of("/proc/self"); }
inline std::set<pid_t> children_of(pid_t pid) { return children_of("/proc/" + std::to_string(pid)); }

// This process's open fds and what each points at, the listing's own fd left out.
inline std::map<int, std::string> open_fds() {
  std::map<int, std::string> out;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    const int own = ::dirfd(d);
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.' || std::atoi(e->d_name) == own) continue;
      char target[PATH_MAX] = {};
      const ssize_t n = ::readlink((std::string("/proc/self/fd/") + e->d_name).c_str(), target, sizeof target - 1);
      out[std::atoi(e->d_name)] = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
    }
    ::closedir(d);
  }
  return out;
}

// This process's threads with this name (the pool's thread is "pc-supervisor"), as /proc/self/task/TID.
inline std::vector<std::string> threads_named(const std::string& name) {
  std::vector<std::string> out;
  for (const auto& tid : entries_of("/proc/self/task")) {
    const std::string task = "/proc/self/task/" + tid;
    std::ifstream comm(task + "/comm");
    std::string got;
    if (std::getline(comm, got) && got == name) out.push_back(task);
  }
  return out;
}

// Shared anonymous mappings of this process (how a pool's region shows up).
inline int shared_anonymous_mappings() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line))
    if (line.find("/dev/zero (deleted)") != std::string::npos || line.find("/SYSV") != std::string::npos) ++n;
  return n;
}

inline std::set<std::string> dev_shm() {
  const auto names = entries_of("/dev/shm");
  return {names.begin(), names.end()};
}

inline std::vector<pid_t> pids(const std::vector<parallelcode::worker_info>& ws) {
  std::vector<pid_t> out;
  for (const auto& w : ws) out.push_back(w.pid);
  return out;
}

// Jobs (plain functions: a worker calls them by address). spin_ms is busy for ms
// milliseconds and sleep_ms asleep, both returning ms; the last two never return.
inline int spin_ms(int ms) {
  for (auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
       std::chrono::steady_clock::now() < until;) {
  }
  return ms;
}
inline int sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));  // wait-ok: the job's own work
  return ms;
}
inline int blocks_forever(int) {
  for (;;) ::pause();
}
inline int spins_forever(int) {
  for (volatile bool go = true; go;) {
  }
  return 0;
}

// A file of this test run's own, by name.
inline std::string temp_path(const char* name) {
  return std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/parallelcode-" +
         std::to_string(::getpid()) + "-" + name;
}
inline void touch(const std::string& path) { std::fclose(std::fopen(path.c_str(), "w")); }

// A job that blocks on its first run and returns 7 on the next: the first run
// removes the marker file it was given.
inline int blocks_first_time(const std::string& marker) {
  if (::unlink(marker.c_str()) == 0) blocks_forever(0);
  return 7;
}

// worker_init for the crash-loop cases: aborts while the file crash_flag names exists.
inline std::string crash_flag;
inline void abort_if_flagged(int) {
  if (::access(crash_flag.c_str(), F_OK) == 0) std::abort();
}

// All n workers ready, none with a pid in `old`.
inline bool all_ready(const parallelcode::pool& p, std::size_t n, const std::vector<pid_t>& old = {}) {
  const auto ws = p.workers();
  if (ws.size() != n) return false;
  for (const auto& w : ws) {
    if (w.state != parallelcode::worker_state::ready || w.pid <= 0) return false;
    for (pid_t o : old)
      if (o == w.pid) return false;
  }
  return true;
}

}  // namespace test
