#pragma once

// What both bench programs start other programs with: a temporary directory, a child
// in its own process group that is always stopped and reaped, its output captured.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace bench {

namespace fs = std::filesystem;

[[noreturn]] inline void fail_errno(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }


// Polls ready() until it holds; the deadline only turns a hang into an error.
template <class F>
void wait_until(F&& ready, std::chrono::milliseconds deadline, const std::string& what,
                std::chrono::microseconds every = std::chrono::milliseconds(2)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!ready()) {
    if (std::chrono::steady_clock::now() > end) throw std::runtime_error("timed out waiting for " + what);
    std::this_thread::sleep_for(every);
  }
}


// A directory of our own under $TMPDIR, removed with what is in it.
class temp_dir {
 public:
  explicit temp_dir(const std::string& prefix = "pc-bench") {
    std::string t = (fs::temp_directory_path() / (prefix + ".XXXXXX")).string();
    if (!::mkdtemp(t.data())) fail_errno("mkdtemp");
    path_ = t;
  }
  ~temp_dir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};


// A program we started, in its own process group; stopped (TERM, then KILL) and reaped
// by its pid when this goes, whatever happened before.
class process {
 public:
  // stdin_fd / stdout_fd: -1 for /dev/null and the log file; stderr goes to the log.
  process(const std::vector<std::string>& argv, const fs::path& log, int stdin_fd = -1, int stdout_fd = -1) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) fail_errno("open " + log.string());
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) {
      ::close(out);
      fail_errno("fork");
    }
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a crashed bench leaves nothing behind
      if (::getppid() != parent) ::_exit(127);
      const int in = stdin_fd >= 0 ? stdin_fd : ::open("/dev/null", O_RDONLY);
      ::dup2(in, 0);
      ::dup2(stdout_fd >= 0 ? stdout_fd : out, 1);
      ::dup2(out, 2);
      ::execvp(args[0], args.data());
      std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
      ::_exit(127);
    }
    ::close(out);
    ::setpgid(pid_, pid_);  // also here: no race with a kill of the group right after
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) {
      const int e = errno;
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      errno = e;
      fail_errno("pidfd_open");
    }
  }
  ~process() {
    if (!reaped_) {
      ::kill(-pid_, SIGTERM);
      if (!wait_exit(std::chrono::seconds(10))) ::kill(-pid_, SIGKILL);
      wait_exit(std::chrono::seconds(10));
    }
    ::kill(-pid_, SIGKILL);  // whatever of its group outlived it (workers of a killed daemon)
    ::close(pidfd_);
  }
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  pid_t pid() const { return pid_; }
  // Asks it to stop without waiting: the destructor waits (so many stop at once).
  void terminate() const {
    if (!reaped_) ::kill(-pid_, SIGTERM);
  }
  bool running() { return !wait_exit(std::chrono::milliseconds(0)); }
  void signal(int sig) const { ::kill(pid_, sig); }
  // True once it has exited (and is reaped); its status in status().
  bool wait_exit(std::chrono::milliseconds timeout) {
    if (reaped_) return true;
    pollfd p{pidfd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    ::waitpid(pid_, &status_, 0);
    reaped_ = true;
    return true;
  }
  int status() const { return status_; }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};


// The end of a log, for an error that says why.
// A file's bytes, all of them (none if it cannot be read).
inline std::string file_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string tail_of(const fs::path& log) {
  const std::string all = file_text(log);
  return all.size() > 800 ? all.substr(all.size() - 800) : all;
}


// A program's exit status and standard output.
inline std::pair<int, std::string> run_capture(const std::vector<std::string>& argv, const fs::path& log) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail_errno("pipe");
  process p(argv, log, -1, fds[1]);
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  p.wait_exit(std::chrono::seconds(30));
  return {WIFEXITED(p.status()) ? WEXITSTATUS(p.status()) : -1, out};
}


// A path relative to this program's own directory (the build tree's layout).
inline std::string next_to_program(const char* argv0, const std::string& relative) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) self = fs::absolute(argv0);
  return (self.parent_path() / relative).lexically_normal().string();
}

}  // namespace bench
