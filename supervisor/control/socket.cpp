#include "socket.hpp"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "unique_fd.hpp"

namespace parallelcode::control {

owned_fd::owned_fd() noexcept = default;
owned_fd::owned_fd(int fd) {
  if (fd >= 0) fd_ = std::make_unique<detail::unique_fd>(fd);
}
owned_fd::owned_fd(owned_fd&&) noexcept = default;
owned_fd& owned_fd::operator=(owned_fd&&) noexcept = default;
owned_fd::~owned_fd() = default;

int owned_fd::get() const noexcept { return fd_ ? fd_->get() : -1; }

void owned_fd::reset(int fd) { *this = owned_fd(fd); }

owned_fd connect_to(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) throw std::invalid_argument("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  owned_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::system_error(errno, std::generic_category(), "cannot connect to " + path);
  return fd;
}

owned_fd accept_client(const owned_fd& listener) {
  return owned_fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

std::optional<uid_t> peer_uid(const owned_fd& connection) {
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(connection.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) return std::nullopt;
  return peer.uid;
}

}  // namespace parallelcode::control
