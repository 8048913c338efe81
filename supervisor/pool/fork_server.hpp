#pragma once

// The fork server: a single-threaded process forked once from the pool's thread.
//
// It forks every worker (so none is forked from a multithreaded host), watches
// them through pidfds, reaps them and reports each birth and death.

#include <chrono>
#include <cstdint>
#include <sys/types.h>

#include "region.hpp"
#include "unique_fd.hpp"
#include "worker_process.hpp"

namespace parallelcode::detail {

enum class fs_command : std::uint32_t {
  spawn = 1,  // fork a worker for id on channel
  stop,       // kill and reap every worker, then exit
  kill,       // SIGKILL the worker on channel: the host lost its pidfd and cannot signal it
};

struct fs_request {
  fs_command command;
  std::int32_t id;
  std::uint32_t channel;
};

enum class fs_event : std::uint32_t {
  spawned = 1,   // pid is up; a pidfd for it comes along
  exited,        // pid was reaped: code is CLD_EXITED, CLD_KILLED or CLD_DUMPED
  spawn_failed,  // fork failed with errno `status`
};

struct fs_report {
  fs_event event;
  std::int32_t id;
  std::uint32_t channel;
  pid_t pid;
  std::int32_t code;
  std::int32_t status;
};

struct fork_server_config {
  const region* shm;
  unsigned concurrency;
  std::uint64_t max_payload;
  int doorbell;
  void (*worker_init)(int);
  std::size_t max_worker_rss;
};

// The host's end: owns the fork server process and the socket to it.
class fork_server {
 public:
  // Forks it from the calling thread, which must live as long as the pool:
  // the fork server's parent-death signal follows that thread.
  explicit fork_server(const fork_server_config& config);
  fork_server(fork_server&&) noexcept = default;
  fork_server& operator=(fork_server&&) noexcept = default;
  ~fork_server();  // stop()

  pid_t pid() const noexcept { return self_.pid(); }
  std::chrono::steady_clock::time_point started_at() const noexcept { return started_at_; }
  bool running() const noexcept { return static_cast<bool>(socket_); }
  int socket() const noexcept { return socket_.get(); }

  enum class send_status { sent, full, gone };
  // Never blocks: a full socket means the fork server is busy sending us reports.
  send_status request(const fs_request& r) noexcept;

  enum class receive_status { report, nothing, gone };
  // Takes one report if there is one; a spawned report's pidfd lands in pidfd. A
  // pidfd the kernel dropped (our fd limit) leaves pidfd empty: the caller must not
  // keep a worker it cannot signal.
  receive_status receive(fs_report& report, unique_fd& pidfd) noexcept;

  // Tells it to kill and reap its workers and exit, waits up to grace, then
  // SIGKILLs it; reaps it. Idempotent.
  void stop(std::chrono::milliseconds grace) noexcept;

 private:
  worker_process self_;
  std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
  unique_fd socket_;
};

}  // namespace parallelcode::detail
