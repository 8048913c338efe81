#include <parallelcode/errors.hpp>

#include <cstring>
#include <string>

namespace parallelcode {

std::string signal_name(int signal) {
  const char* abbrev = ::sigabbrev_np(signal);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signal);
}

std::string describe_exit(int signal, int exit_status) {
  return signal ? "killed by " + signal_name(signal) : "exited with status " + std::to_string(exit_status);
}

namespace {

std::string describe_death(pid_t pid, int signal, int exit_status) {
  return "parallelcode: worker " + std::to_string(pid) + " " + describe_exit(signal, exit_status) + " while running the job";
}

}  // namespace

job_failed::job_failed(std::string type, std::string message)
    : job_error("parallelcode: job threw " + type + (message.empty() ? "" : ": " + message)),
      type_(std::move(type)),
      message_(std::move(message)) {}

worker_lost::worker_lost(pid_t pid, int signal, int exit_status)
    : job_error(describe_death(pid, signal, exit_status)), pid_(pid), signal_(signal), exit_status_(exit_status) {}

job_timeout::job_timeout(std::chrono::milliseconds timeout, pid_t pid)
    : job_error("parallelcode: the job ran past its timeout of " + std::to_string(timeout.count()) +
                " ms; its worker " + std::to_string(pid) + " was killed"),
      timeout_(timeout),
      pid_(pid) {}

}  // namespace parallelcode
