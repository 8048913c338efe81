#include "metrics_endpoint.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <system_error>

#include <httplib.h>

namespace parallelcode::control {

struct metrics_endpoint::http {
  httplib::Server server;
};

metrics_endpoint::metrics_endpoint(const metrics_address& where, std::function<std::string()> text)
    : http_(std::make_unique<http>()) {
  auto& server = http_->server;
  // A scraper or two: not httplib's default of 8 threads.
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  server.set_keep_alive_timeout(2);
  server.set_payload_max_length(64 * 1024);
  // Not httplib's SO_REUSEPORT, which lets a second daemon bind the same port unheard.
  server.set_socket_options([](socket_t fd) {
    const int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  });
  server.Get("/metrics", [text = std::move(text)](const httplib::Request&, httplib::Response& res) {
    res.set_content(text(), "text/plain; version=0.0.4; charset=utf-8");
  });
  const bool v6 = where.host.find(':') != std::string::npos;
  const std::string shown = v6 ? "[" + where.host + "]" : where.host;
  errno = 0;
  const int port = where.port == 0 ? server.bind_to_any_port(where.host)
                                   : (server.bind_to_port(where.host, static_cast<int>(where.port)) ? static_cast<int>(where.port) : -1);
  if (port <= 0) {
    const int why = errno ? errno : EADDRNOTAVAIL;
    throw std::system_error(why, std::generic_category(), "--metrics: cannot listen on " + shown + ":" + std::to_string(where.port));
  }
  address_ = shown + ":" + std::to_string(port);
  thread_ = std::thread([&server] { server.listen_after_bind(); });
  // stop() is only heard once listening has begun.
  while (!server.is_running()) std::this_thread::yield();
}

metrics_endpoint::~metrics_endpoint() {
  http_->server.stop();
  thread_.join();
}

}  // namespace parallelcode::control
