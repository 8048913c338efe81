#pragma once

#include <unistd.h>

#include <utility>

#include "tracked.hpp"

namespace parallelcode::detail {

// Owns one file descriptor of the library's (tracked: see tracked.hpp).
class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) { track_fd(fd_); }
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { close(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    untrack_fd(fd_);
    return std::exchange(fd_, -1);
  }
  void reset(int fd = -1) noexcept {
    close();
    fd_ = fd;
    track_fd(fd_);
  }

 private:
  void close() noexcept {
    if (fd_ < 0) return;
    untrack_fd(fd_);
    ::close(std::exchange(fd_, -1));
  }

  int fd_ = -1;
};

}  // namespace parallelcode::detail
