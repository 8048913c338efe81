#pragma once

// worker_process: one child process, owned through its pidfd (move-only).
//
// Signals cannot reach a reused pid; SIGTERM turns into SIGKILL after a grace;
// its parent (the fork server) reaps it.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <optional>

#include "unique_fd.hpp"

namespace parallelcode::detail {

class worker_process {
 public:
  using clock = std::chrono::steady_clock;

  worker_process() noexcept = default;
  // pidfd may be empty (the kernel dropped it): such a process can be neither signalled nor awaited.
  worker_process(pid_t pid, unique_fd pidfd) noexcept : pid_(pid), pidfd_(std::move(pidfd)) {}
  // Our own child, not reaped yet: its pid cannot have been reused. Empty pidfd if pidfd_open failed.
  static worker_process open_child(pid_t pid) noexcept;
  worker_process(worker_process&&) noexcept = default;
  worker_process& operator=(worker_process&&) noexcept = default;
  worker_process(const worker_process&) = delete;
  worker_process& operator=(const worker_process&) = delete;

  pid_t pid() const noexcept { return pid_; }
  int pidfd() const noexcept { return pidfd_.get(); }
  bool watched() const noexcept { return static_cast<bool>(pidfd_); }

  bool signal(int sig) const noexcept;  // false if it could not be sent
  bool kill() const noexcept { return signal(SIGKILL); }
  // SIGTERM now, SIGKILL once grace has passed (see escalate); only the first call counts.
  void terminate(clock::duration grace) noexcept;
  bool terminating() const noexcept { return kill_at_.has_value(); }
  // The pool's timer: sends the SIGKILL that terminate() left due; true if it did.
  bool escalate(clock::time_point now) noexcept;
  // When escalate() has something to do; max() if nothing.
  clock::time_point kill_due() const noexcept { return kill_at_.value_or(clock::time_point::max()); }

  // Waits until it has exited (a zombie counts) or until passes; true if it exited.
  bool wait_exit(clock::time_point until) const noexcept;
  // Its parent only: reaps it if it exited (or waits until it does); true with info filled if reaped.
  bool reap(siginfo_t& info, bool wait) const noexcept;

 private:
  pid_t pid_ = 0;
  unique_fd pidfd_;
  std::optional<clock::time_point> kill_at_;  // SIGTERM was sent: SIGKILL then (max() once sent)
};

}  // namespace parallelcode::detail
