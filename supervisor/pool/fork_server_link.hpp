#pragma once

// The pool's end of its fork server: requests, report reads, restart and backoff.
//
// It owns the process, the requests it has yet to be sent, when its reports are
// worth a socket read, and when a lost one is forked again.

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>

#include "fork_server.hpp"

namespace parallelcode::detail {

class fork_server_link {
 public:
  using clock = std::chrono::steady_clock;

  // Before a pool starts: no server, no request, no backoff.
  void reset() noexcept;
  // Forks a fork server and watches its socket on epoll; throws std::system_error.
  // Requests for the one before are dropped: the new one spawns every slot afresh.
  void start(const fork_server_config& config, int epoll);
  // After start() threw on a running pool: true if a new try is due later
  // (restart_due), false once it failed too often in a row.
  bool retry_later();
  // It died: reaps it; returns how long to wait before forking the next (0: now).
  std::chrono::milliseconds lost() noexcept;
  // Once restart time has come: true, and forgets it.
  bool restart_due(clock::time_point now) noexcept;
  // Hands over the fork server to stop outside the pool's lock (it reaps every worker).
  std::optional<fork_server> release() noexcept;

  bool running() const noexcept { return server_ && server_->running(); }
  pid_t pid() const noexcept { return server_ ? server_->pid() : 0; }

  void request(const fs_request& r);  // sent by the next flush(), once this step's events are out
  void flush() noexcept;              // what the socket takes now; the rest waits
  bool take_requests_added() noexcept;  // since the last call: the step that sends them was busy

  // Whether to read its socket now: it said it sent reports (a counter in shared
  // memory), the pool's thread just woke, or a busy pool has not looked for a while.
  bool reports_due(std::uint32_t reports, clock::time_point now) noexcept;
  fork_server::receive_status receive(fs_report& r, unique_fd& pidfd) noexcept { return server_->receive(r, pidfd); }
  void woke() noexcept { check_ = true; }  // after a sleep: its end of file shows in the socket

  // The link's next timer: a restart, or a retry of requests the socket had no room for.
  clock::time_point next_timer() const noexcept;

 private:
  std::optional<fork_server> server_;
  std::deque<fs_request> requests_;  // spawns not yet sent, or the socket had no room for
  bool requests_added_ = false;
  std::optional<clock::time_point> restart_at_;
  std::uint32_t reports_seen_ = 0;  // of the shared report counter
  bool check_ = true;
  clock::time_point next_check_{};
  unsigned young_deaths_ = 0;  // in a row
};

}  // namespace parallelcode::detail
