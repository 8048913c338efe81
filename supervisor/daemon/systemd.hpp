#pragma once

// The daemon as systemd and operators run it, without libsystemd: the socket systemd
// may pass (LISTEN_FDS), what the daemon tells it (NOTIFY_SOCKET, WATCHDOG_USEC), and
// who besides its own uid and root may use a socket shared with a group.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "socket.hpp"

namespace parallelcode::control {

// The listening socket systemd passed us (fd 3, LISTEN_PID ours), or none. Clears
// LISTEN_* either way, so no worker inherits them. std::runtime_error if what was
// passed is not one listening Unix stream socket.
owned_fd inherited_listener();

// The path a Unix socket is bound to; "" if it has none.
std::string bound_path(const owned_fd& socket);

// --socket-group: a group name or number; std::invalid_argument if there is none such.
gid_t parse_group(const std::string& name);
// --socket-mode: octal, owner read and write, nothing for others; std::invalid_argument otherwise.
mode_t parse_socket_mode(const std::string& octal);
// Gives the socket file at path (bound by us, still 0600) its group, then its mode;
// std::system_error if it cannot.
void share_socket(const std::string& path, std::optional<gid_t> group, mode_t mode);
// The group a socket file lets in besides its owner: its group, if the mode grants
// that group read and write; none otherwise.
std::optional<gid_t> sharing_group(const std::string& path);
// Whether the process at the other end of a connection belongs to group (primary or supplementary).
bool peer_in_group(const owned_fd& connection, gid_t group);

// What the daemon tells systemd (the sd_notify protocol); nothing when nobody listens.
class systemd_notifier {
 public:
  // Takes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment and
  // clears them: a worker must neither speak for the daemon nor pet its watchdog.
  systemd_notifier();
  systemd_notifier(const systemd_notifier&) = delete;
  systemd_notifier& operator=(const systemd_notifier&) = delete;

  void notify(std::string_view state) const;
  // RELOADING=1 with MONOTONIC_USEC (systemd 253's notify-reload protocol), and a STATUS= line.
  void reloading(std::string_view status) const;
  // How often WATCHDOG=1 is due: half of WATCHDOG_USEC; none without a watchdog for us.
  std::optional<std::chrono::microseconds> watchdog_interval() const { return watchdog_; }

 private:
  std::string address_;  // NOTIFY_SOCKET, a leading '@' made '\0' (abstract); "" if none
  owned_fd fd_;
  std::optional<std::chrono::microseconds> watchdog_;
};

}  // namespace parallelcode::control
