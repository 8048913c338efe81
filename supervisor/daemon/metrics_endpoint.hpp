#pragma once

// GET /metrics over HTTP (cpp-httplib), served on threads of its own: a scrape reads
// counters and the pool's state, never the daemon's loop.

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "metrics.hpp"

namespace parallelcode::control {

class metrics_endpoint {
 public:
  // Binds at once; std::system_error if it cannot (a port in use, say).
  metrics_endpoint(const metrics_address& where, std::function<std::string()> text);
  // Stops serving and joins its threads.
  ~metrics_endpoint();
  metrics_endpoint(const metrics_endpoint&) = delete;
  metrics_endpoint& operator=(const metrics_endpoint&) = delete;

  // As bound: "127.0.0.1:9464", "[::1]:9464"; the port chosen when 0 was asked.
  const std::string& address() const noexcept { return address_; }

 private:
  struct http;
  std::unique_ptr<http> http_;
  std::string address_;
  std::thread thread_;
};

}  // namespace parallelcode::control
