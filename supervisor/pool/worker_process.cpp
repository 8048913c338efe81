// worker_process: signals, the TERM→KILL escalation and reaping, all through the pidfd.

#include "worker_process.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "pidfd.hpp"

namespace parallelcode::detail {

worker_process worker_process::open_child(pid_t pid) noexcept { return {pid, unique_fd(::pidfd_open(pid, 0))}; }

bool worker_process::signal(int sig) const noexcept {
  return pidfd_ && ::pidfd_send_signal(pidfd_.get(), sig, nullptr, 0) == 0;
}

void worker_process::terminate(clock::duration grace) noexcept {
  if (kill_at_) return;
  signal(SIGTERM);
  kill_at_ = clock::now() + grace;
}

bool worker_process::escalate(clock::time_point now) noexcept {
  if (!kill_at_ || now < *kill_at_) return false;
  kill();
  kill_at_ = clock::time_point::max();  // sent; its exit ends it
  return true;
}

bool worker_process::wait_exit(clock::time_point until) const noexcept {
  if (!pidfd_) return false;
  for (;;) {
    pollfd fd{pidfd_.get(), POLLIN, 0};
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - clock::now()).count();
    const int n = ::poll(&fd, 1, static_cast<int>(std::clamp<long>(left, 0, 1 << 30)));
    if (n >= 0 || errno != EINTR) return n > 0;
  }
}

bool worker_process::reap(siginfo_t& info, bool wait) const noexcept {
  if (!pidfd_) return false;
  info = {};
  const int flags = WEXITED | (wait ? 0 : WNOHANG);
  int r;
  while ((r = ::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, flags)) < 0 && errno == EINTR) {
  }
  return r == 0 && info.si_pid != 0;
}

}  // namespace parallelcode::detail
