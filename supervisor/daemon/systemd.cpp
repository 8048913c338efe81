#include "systemd.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace parallelcode::control {

namespace {

constexpr int first_passed_fd = 3;  // SD_LISTEN_FDS_START

// A decimal environment value, or none if unset or not a number.
std::optional<unsigned long long> number_from(const char* name) {
  const char* text = std::getenv(name);
  if (!text || !*text) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long n = std::strtoull(text, &end, 10);
  if (errno || *end) return std::nullopt;
  return n;
}

int socket_option(int fd, int option) {
  int value = 0;
  socklen_t n = sizeof value;
  return ::getsockopt(fd, SOL_SOCKET, option, &value, &n) == 0 ? value : -1;
}

}  // namespace

owned_fd inherited_listener() {
  const auto pid = number_from("LISTEN_PID");
  const auto fds = number_from("LISTEN_FDS");
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  // Meant for another process (one that exec'ed us without clearing them): not ours.
  if (!pid || !fds || *fds == 0 || *pid != static_cast<unsigned long long>(::getpid())) return {};
  if (*fds != 1) throw std::runtime_error("systemd passed " + std::to_string(*fds) + " sockets: this daemon serves one (one ListenStream=)");
  sockaddr_storage addr{};
  socklen_t n = sizeof addr;
  if (::getsockname(first_passed_fd, reinterpret_cast<sockaddr*>(&addr), &n) != 0 || addr.ss_family != AF_UNIX ||
      socket_option(first_passed_fd, SO_TYPE) != SOCK_STREAM || socket_option(first_passed_fd, SO_ACCEPTCONN) != 1)
    throw std::runtime_error("the socket systemd passed (fd 3) is not a listening Unix stream socket: use ListenStream=/path");
  owned_fd fd(first_passed_fd);
  // The loop never blocks on accept, and no exec'ed program inherits the listener.
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0 || ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0)
    throw std::system_error(errno, std::generic_category(), "fcntl on the socket systemd passed");
  return fd;
}

std::string bound_path(const owned_fd& socket) {
  sockaddr_un addr{};
  socklen_t n = sizeof addr;
  if (::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&addr), &n) != 0 || addr.sun_family != AF_UNIX) return "";
  const std::size_t room = n > offsetof(sockaddr_un, sun_path) ? n - offsetof(sockaddr_un, sun_path) : 0;
  if (room == 0 || addr.sun_path[0] == '\0') return "";  // unnamed or abstract: no file
  return std::string(addr.sun_path, strnlen(addr.sun_path, room));
}

gid_t parse_group(const std::string& name) {
  if (name.empty()) throw std::invalid_argument("--socket-group: empty");
  if (std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (name.size() > 9) throw std::invalid_argument("--socket-group " + name + ": no such group number");
    return static_cast<gid_t>(std::stoul(name));  // a number needs no entry in /etc/group (chgrp takes it too)
  }
  std::vector<char> buffer(4096);
  group entry{};
  group* found = nullptr;
  int error;
  while ((error = ::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found)) == ERANGE)
    buffer.resize(buffer.size() * 2);
  if (!found) throw std::invalid_argument("--socket-group " + name + ": no such group" + (error ? std::string(" (") + std::strerror(error) + ")" : ""));
  return found->gr_gid;
}

// Connecting to a Unix socket takes write permission on its file. Others get none:
// a socket open to every local user is not what a group is for, and the daemon would
// refuse them anyway (it serves its uid, root and the socket's group only).
mode_t parse_socket_mode(const std::string& octal) {
  const bool digits = !octal.empty() && octal.size() <= 4 &&
                      std::all_of(octal.begin(), octal.end(), [](char c) { return c >= '0' && c <= '7'; });
  if (!digits) throw std::invalid_argument("--socket-mode " + octal + ": an octal mode such as 0660");
  const auto mode = static_cast<mode_t>(std::stoul(octal, nullptr, 8));
  if (mode > 0777) throw std::invalid_argument("--socket-mode " + octal + ": no setuid, setgid or sticky bits on a socket");
  if ((mode & 0600) != 0600) throw std::invalid_argument("--socket-mode " + octal + ": the owner needs read and write (06xx)");
  if (mode & 0007) throw std::invalid_argument("--socket-mode " + octal + ": nothing for others (xx0); share it with --socket-group");
  return mode;
}

void share_socket(const std::string& path, std::optional<gid_t> group, mode_t mode) {
  // Through an O_PATH descriptor: a symlink put in the path's place is not followed.
  owned_fd file(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!file) throw std::system_error(errno, std::generic_category(), "cannot open " + path);
  struct stat st{};
  if (::fstat(file.get(), &st) != 0 || !S_ISSOCK(st.st_mode))
    throw std::runtime_error(path + " is no longer the socket this daemon bound");
  // The group first, the mode after: never a moment when the wider mode meets the old group.
  if (group && ::fchownat(file.get(), "", static_cast<uid_t>(-1), *group, AT_EMPTY_PATH) != 0)
    throw std::system_error(errno, std::generic_category(), "cannot give " + path + " to group " + std::to_string(*group));
  // fchmod refuses O_PATH descriptors; its /proc link reaches the same inode.
  const std::string link = "/proc/self/fd/" + std::to_string(file.get());
  if (mode != (st.st_mode & 07777) && ::chmod(link.c_str(), mode) != 0)
    throw std::system_error(errno, std::generic_category(), "cannot set the mode of " + path);
}

std::optional<gid_t> sharing_group(const std::string& path) {
  struct stat st{};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return std::nullopt;
  if ((st.st_mode & 0060) != 0060) return std::nullopt;
  return st.st_gid;
}

bool peer_in_group(const owned_fd& connection, gid_t group) {
  ucred cred{};
  socklen_t n = sizeof cred;
  if (::getsockopt(connection.get(), SOL_SOCKET, SO_PEERCRED, &cred, &n) == 0 && cred.gid == group) return true;
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(connection.get(), SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      return std::find(groups.begin(), groups.end(), group) != groups.end();
    }
    if (errno != ERANGE || bytes / sizeof(gid_t) <= groups.size()) return false;
    groups.resize(bytes / sizeof(gid_t));  // the kernel said how many there are
  }
}

systemd_notifier::systemd_notifier() {
  const char* where = std::getenv("NOTIFY_SOCKET");
  const auto usec = number_from("WATCHDOG_USEC");
  const auto pid = number_from("WATCHDOG_PID");
  if (where && *where && std::strlen(where) < sizeof(sockaddr_un::sun_path) && (where[0] == '/' || where[0] == '@')) {
    address_ = where;
    if (address_[0] == '@') address_[0] = '\0';  // an abstract socket
    fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  }
  // WATCHDOG_PID names the process systemd watches; unset, it is the main one: us.
  if (usec && *usec > 0 && (!pid || *pid == static_cast<unsigned long long>(::getpid())))
    watchdog_ = std::chrono::microseconds(*usec / 2);
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
}

void systemd_notifier::notify(std::string_view state) const {
  if (!fd_) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, address_.data(), address_.size());
  const std::string message = std::string(state) + "\nMAINPID=" + std::to_string(::getpid());
  ::sendto(fd_.get(), message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&addr),
           static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size()));
}

void systemd_notifier::reloading(std::string_view status) const {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const auto usec = static_cast<unsigned long long>(now.tv_sec) * 1'000'000ULL + static_cast<unsigned long long>(now.tv_nsec) / 1000;
  notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=" + std::string(status));
}

}  // namespace parallelcode::control
