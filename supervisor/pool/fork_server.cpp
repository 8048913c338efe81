// The fork server: its loop (fork, watch, reap, report) and the host's end of its socket.

#include "fork_server.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <system_error>
#include <vector>

#include "process_title.hpp"
#include "tracked.hpp"
#include "worker_entry.hpp"

namespace parallelcode::detail {

namespace {

struct child {
  worker_process proc;
  std::int32_t id;
  std::uint32_t channel;
};

void send_report(const region& shm, int sock, const fs_report& r, int fd_to_pass) {
  iovec iov{const_cast<fs_report*>(&r), sizeof r};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd_to_pass >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd_to_pass, sizeof(int));
  }
  while (::sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
  shm.fork_server_reports().fetch_add(1, std::memory_order_release);
}

// The host's handlers are host code: they have no business in our processes.
void reset_signals() {
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction sa{};
    if (::sigaction(sig, nullptr, &sa) != 0) continue;
    const bool handled = (sa.sa_flags & SA_SIGINFO) || (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
    if (handled || sig == SIGCHLD) {
      sa = {};
      sa.sa_handler = SIG_DFL;
      ::sigaction(sig, &sa, nullptr);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

[[noreturn]] void kill_all_and_exit(std::vector<child>& children) {
  for (const child& c : children) c.proc.kill();
  for (const child& c : children) {
    siginfo_t info;
    c.proc.reap(info, true);
  }
  ::_exit(0);
}

[[noreturn]] void run_fork_server(int sock, pid_t host, const fork_server_config& config) {
  // Die with the pool's thread; it may have gone before the line above took effect.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != host) ::_exit(0);
  set_process_title("pc-forkserver", "parallelcode: fork server");
  // Our own process group: a terminal's ^C goes to the host, which decides.
  ::setpgid(0, 0);
  reset_signals();
  drop_tracked({sock, config.doorbell}, config.shm->address());
  // Let go of the host's free heap pages: shared with us, each one the host writes
  // again (its next jobs' state) would be copied first. Ours, it just takes back.
  ::malloc_trim(0);

  const pid_t self = ::getpid();
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) ::_exit(71);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = sock;
  if (::epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev) != 0) ::_exit(71);
  std::vector<child> children;

  for (;;) {
    epoll_event events[16];
    const int n = ::epoll_wait(ep, events, 16, 1000);
    if (n < 0 && errno != EINTR) ::_exit(71);
    if (n <= 0) {
      if (::getppid() != host) kill_all_and_exit(children);
      continue;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == sock) {
        fs_request req{};
        const ssize_t got = ::recv(sock, &req, sizeof req, MSG_DONTWAIT);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (got == sizeof req && req.command == fs_command::kill) {
          // Reaped, and reported, when its pidfd says it is gone.
          for (const child& c : children)
            if (c.channel == req.channel && c.id == req.id) c.proc.kill();
          continue;
        }
        // End of file (the host is gone), stop, or garbage: we are done.
        if (got != sizeof req || req.command != fs_command::spawn) kill_all_and_exit(children);
        const pid_t pid = ::fork();
        if (pid == 0) {
          ::close(ep);
          ::close(sock);
          children.clear();  // their pidfds are no business of a worker
          run_worker({config.shm, req.channel, req.id, config.concurrency, config.max_payload, config.doorbell, self,
                      config.worker_init, config.max_worker_rss});
        }
        if (pid < 0) {
          send_report(*config.shm, sock, {fs_event::spawn_failed, req.id, req.channel, 0, 0, errno}, -1);
          continue;
        }
        worker_process proc = worker_process::open_child(pid);
        if (!proc.watched()) ::_exit(71);
        ev.data.fd = proc.pidfd();
        if (::epoll_ctl(ep, EPOLL_CTL_ADD, proc.pidfd(), &ev) != 0) ::_exit(71);
        send_report(*config.shm, sock, {fs_event::spawned, req.id, req.channel, pid, 0, 0}, proc.pidfd());
        children.push_back({std::move(proc), req.id, req.channel});
      } else {
        auto it = std::find_if(children.begin(), children.end(), [&](const child& c) { return c.proc.pidfd() == fd; });
        if (it == children.end()) continue;
        siginfo_t info;
        if (!it->proc.reap(info, false)) continue;
        send_report(*config.shm, sock, {fs_event::exited, it->id, it->channel, it->proc.pid(), info.si_code, info.si_status}, -1);
        ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        children.erase(it);  // closes its pidfd
      }
    }
  }
}

}  // namespace

fork_server::fork_server(const fork_server_config& config) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    throw std::system_error(errno, std::system_category(), "parallelcode: socketpair");
  unique_fd ours(sv[0]);
  unique_fd theirs(sv[1]);
  const pid_t host = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::system_category(), "parallelcode: fork of the fork server");
  if (pid == 0) {
    ours.reset();
    run_fork_server(theirs.release(), host, config);
  }
  self_ = worker_process::open_child(pid);
  socket_ = std::move(ours);
  ::fcntl(socket_.get(), F_SETFL, O_NONBLOCK);
  if (!self_.watched()) {
    const int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw std::system_error(err, std::system_category(), "parallelcode: pidfd_open of the fork server");
  }
}

fork_server::~fork_server() { stop(std::chrono::seconds(5)); }

fork_server::send_status fork_server::request(const fs_request& r) noexcept {
  if (!socket_) return send_status::gone;
  for (;;) {
    if (::send(socket_.get(), &r, sizeof r, MSG_NOSIGNAL | MSG_DONTWAIT) == static_cast<ssize_t>(sizeof r))
      return send_status::sent;
    if (errno == EINTR) continue;
    return errno == EAGAIN ? send_status::full : send_status::gone;
  }
}

fork_server::receive_status fork_server::receive(fs_report& report, unique_fd& pidfd) noexcept {
  if (!socket_) return receive_status::gone;
  iovec iov{&report, sizeof report};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t got;
  while ((got = ::recvmsg(socket_.get(), &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (got < 0 && errno == EAGAIN) return receive_status::nothing;
  if (got != static_cast<ssize_t>(sizeof report)) return receive_status::gone;
  pidfd.reset();
  // Every fd that did arrive is ours to close; with MSG_CTRUNC the kernel dropped one.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < fds; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      unique_fd got_fd(fd);
      if (!pidfd && report.event == fs_event::spawned) pidfd = std::move(got_fd);
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) pidfd.reset();
  return receive_status::report;
}

void fork_server::stop(std::chrono::milliseconds grace) noexcept {
  if (!self_.watched()) return;
  // Say stop, then close: a copy of our socket in some process forked from the
  // host would keep the end of file from reaching it. (If the socket is full the
  // fork server is alive and reading: the end of file reaches it.)
  request({fs_command::stop, 0, 0});
  socket_.reset();
  if (!self_.wait_exit(std::chrono::steady_clock::now() + grace)) self_.kill();
  siginfo_t info;
  self_.reap(info, true);
  self_ = worker_process();
}

}  // namespace parallelcode::detail
