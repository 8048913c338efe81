#pragma once

// The daemon's loop: one thread, epoll over the control socket, its clients, a
// signalfd and an eventfd that the pool's thread rings when jobs end.

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <parallelcode/parallelcode.hpp>

#include "unique_fd.hpp"

namespace parallelcode::control {

struct server_settings {
  std::size_t max_frame;
  std::chrono::milliseconds drain_timeout;
  unsigned max_clients;
};

// One line per event on stderr, from any thread.
void log(const char* format, ...) __attribute__((format(printf, 1, 2)));

class server {
 public:
  // listener: bound and listening; signals: a signalfd for the signals the daemon owns.
  server(pool& workers, detail::unique_fd listener, detail::unique_fd signals, const server_settings& settings);
  // Serves until a signal or a stop request ends it; returns the exit status.
  int run();

 private:
  struct client {
    detail::unique_fd fd;
    std::string in;
    std::string out;
    std::size_t outstanding = 0;  // jobs it submitted that have not ended
    bool closing = false;         // close once out is sent
    bool watching_input = true;
  };
  struct completion {
    std::uint64_t client;
    std::string response;
  };

  void accept_clients();
  void read_client(std::uint64_t id);
  void write_client(std::uint64_t id);
  void handle_frame(std::uint64_t id, client& c, std::string_view body);
  void submit(std::uint64_t id, client& c, const rapidjson::Value& request, std::optional<std::int64_t> rid);
  std::string status(std::optional<std::int64_t> rid) const;
  void handle_signals();
  void deliver_completions();
  void begin_stop(bool graceful);
  void update_interest(std::uint64_t id, client& c);
  void drop(std::uint64_t id);
  void respond(client& c, std::string_view body);
  void fail_and_close(client& c, std::string_view type, std::string_view message);

  pool& pool_;
  detail::unique_fd listener_;
  detail::unique_fd signals_;
  detail::unique_fd completions_ready_;  // eventfd
  detail::unique_fd epoll_;
  server_settings settings_;
  std::map<std::uint64_t, client> clients_;
  std::uint64_t next_client_ = 1;
  std::size_t outstanding_ = 0;

  std::mutex completions_mutex_;
  std::vector<completion> completions_;  // filled on the pool's thread

  bool stopping_ = false;
  std::optional<std::chrono::steady_clock::time_point> drain_until_;
};

}  // namespace parallelcode::control
