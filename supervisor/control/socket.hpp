#pragma once

// The file descriptors the daemon and the CLI own, and the control socket's two
// ends: the CLI connects, the daemon accepts; each asks who is at the other end.

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>

namespace parallelcode::detail {
class unique_fd;
}

namespace parallelcode::control {

// One owned file descriptor, move-only. It is lib's unique_fd inside: registered
// with the library's table of fds, so a fork server forked later (a respawned one,
// in the daemon) drops it rather than keep a client's connection open.
class owned_fd {
 public:
  owned_fd() noexcept;
  explicit owned_fd(int fd);  // takes it, or nothing if fd < 0
  owned_fd(owned_fd&&) noexcept;
  owned_fd& operator=(owned_fd&&) noexcept;
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;
  ~owned_fd();

  int get() const noexcept;  // -1 if none
  explicit operator bool() const noexcept { return get() >= 0; }
  void reset(int fd = -1);

 private:
  std::unique_ptr<detail::unique_fd> fd_;
};

// A blocking connection to the Unix socket at path; std::invalid_argument if the path
// is too long for one, std::system_error if nobody listens there.
owned_fd connect_to(const std::string& path);

// The next client waiting on a listening socket, non-blocking; none (errno says why) if none.
owned_fd accept_client(const owned_fd& listener);

// The user at the other end of a connected Unix socket; nothing if it cannot be told.
std::optional<uid_t> peer_uid(const owned_fd& connection);

}  // namespace parallelcode::control
