#pragma once

// What the suites share: waiting on a condition with a deadline, and looking at
// processes and mappings from the outside.

#include <dirent.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <parallelcode/parallelcode.hpp>

namespace test {

using namespace std::chrono_literals;

// Under a sanitizer the heap is the sanitizer's, not glibc's.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif

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

// A process's children (this one's by default), from each of its threads' /proc lists.
inline std::set<pid_t> children_of(const std::string& proc) {
  std::set<pid_t> out;
  if (DIR* d = ::opendir((proc + "/task").c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream f(proc + "/task/" + e->d_name + "/children");
      pid_t pid;
      while (f >> pid) out.insert(pid);
    }
    ::closedir(d);
  }
  return out;
}
inline std::set<pid_t> children() { return children_of("/proc/self"); }
inline std::set<pid_t> children_of(pid_t pid) { return children_of("/proc/" + std::to_string(pid)); }

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
  std::set<std::string> out;
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') out.insert(e->d_name);
    ::closedir(d);
  }
  return out;
}

inline std::vector<pid_t> pids(const std::vector<parallelcode::worker_info>& ws) {
  std::vector<pid_t> out;
  for (const auto& w : ws) out.push_back(w.pid);
  return out;
}

// Jobs: a busy one of ms milliseconds that returns ms, and one that never returns.
inline int spin_ms(int ms) {
  for (auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
       std::chrono::steady_clock::now() < until;) {
  }
  return ms;
}
inline int pause_forever(int) {
  for (;;) ::pause();
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
