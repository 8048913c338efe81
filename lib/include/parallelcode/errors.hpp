#pragma once

#include <chrono>
#include <stdexcept>
#include <string>
#include <sys/types.h>

#include <parallelcode/export.hpp>

namespace parallelcode {

// Every way a job can end without a result. result() throws one of these;
// on_error receives it.
class PARALLELCODE_API job_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The job's function threw. The worker lives on.
class PARALLELCODE_API job_failed : public job_error {
 public:
  job_failed(std::string type, std::string message);
  const std::string& type() const noexcept { return type_; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string type_;
  std::string message_;
};

// The worker died while the job was on it.
class PARALLELCODE_API worker_lost : public job_error {
 public:
  worker_lost(pid_t pid, int signal, int exit_status);
  pid_t pid() const noexcept { return pid_; }
  int signal() const noexcept { return signal_; }            // 0 when it exited
  int exit_status() const noexcept { return exit_status_; }  // -1 when a signal killed it

 private:
  pid_t pid_;
  int signal_;
  int exit_status_;
};

// The job ran longer than its timeout; its worker was killed.
class PARALLELCODE_API job_timeout : public job_error {
 public:
  job_timeout(std::chrono::milliseconds timeout, pid_t pid);
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }
  pid_t pid() const noexcept { return pid_; }

 private:
  std::chrono::milliseconds timeout_;
  pid_t pid_;
};

// The data or the result could not be encoded or decoded, or is over max_payload.
class PARALLELCODE_API payload_error : public job_error {
 public:
  using job_error::job_error;
};

// The job never ran or was abandoned: the pool was not running or was freed.
class PARALLELCODE_API job_cancelled : public job_error {
 public:
  using job_error::job_error;
};

// "SIGKILL", or "signal 77" for one without a name.
PARALLELCODE_API std::string signal_name(int signal);
// How a process ended: "killed by SIGKILL" or "exited with status 3".
PARALLELCODE_API std::string describe_exit(int signal, int exit_status);

}  // namespace parallelcode
