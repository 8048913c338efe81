#pragma once

// The daemon's loop: one thread, epoll over the control socket, its clients, a
// signalfd and an eventfd that the pool's thread rings when jobs end. It keeps the
// I/O, the limits and the fairness; requests and answers are the control layer's.

#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <parallelcode/parallelcode.hpp>

#include "answers.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "requests.hpp"
#include "socket.hpp"
#include "systemd.hpp"

namespace parallelcode::control {

struct server_settings {
  std::size_t max_frame;
  std::chrono::milliseconds drain_timeout;
  unsigned max_clients;
  std::size_t max_jobs;           // in flight from all clients together
  std::size_t max_request_bytes;  // of job arguments in flight, all clients together
  std::chrono::seconds idle_timeout;
  std::optional<gid_t> group;  // besides our uid and root, members of this group may connect
  std::chrono::nanoseconds batch_below{50'000};  // a task's plain submits batch while its recent runs average less
};


// Jobs the daemon holds for others than its clients (the remote queue's): a graceful
// stop waits for them, and status shows them.
struct outside_jobs {
  std::function<void()> stop_taking;
  std::function<std::size_t()> held;
  std::function<queue_status()> status;
};

class server {
 public:
  // listener: bound and listening; signals: a signalfd for the signals the daemon owns.
  // std::system_error if the loop's own eventfd or epoll cannot be had.
  // systemd hears READY=1 when run() starts, then how the daemon is.
  server(pool& workers, owned_fd listener, owned_fd signals, const server_settings& settings,
         const systemd_notifier& systemd);
  // Serves until a signal or a stop request ends it; returns the exit status.
  int run();
  void serve_outside_jobs(outside_jobs jobs) { outside_ = std::move(jobs); }
  // From any thread: the loop looks again at what it waits for (outside jobs ended).
  void wake() noexcept;
  // From any thread: the Prometheus exposition of the daemon now.
  std::string metrics_text() const;

 private:
  using clock = std::chrono::steady_clock;

  // A job of one line, or a chunk of many (see flush_batch).
  using in_flight = std::variant<job_handle<std::string>, job_handle<detail::map_chunk_result<std::string>>>;
  struct client {
    owned_fd fd;
    std::string in;
    std::string out;
    std::map<std::uint64_t, in_flight> jobs;  // in flight, by our sequence number
    std::size_t lines = 0;                    // the submits they answer
    std::size_t request_bytes = 0;            // their arguments' size
    clock::time_point last_heard = clock::now();
    bool closing = false;  // answer sent: shut down, read what still comes, close
    bool done_sending = false;  // it half-closed: no more requests; answer what is in flight, then close
    std::uint32_t watched = 0;  // the events epoll watches it for: changed only when they must change
  };
  struct completion {
    std::uint64_t client;
    std::uint64_t job;
    std::size_t lines;  // it answers
    std::size_t bytes;  // of their requests
    std::string framed;  // the answers, each in its frame
  };
  // Plain submits read from one client in one turn, waiting to go to the pool as one chunk.
  struct batched_line {
    request_id rid;
    bool with_worker;
    task_counters* counted;
  };
  struct batch {
    std::vector<json_call> calls;
    std::vector<batched_line> lines;
    std::size_t bytes = 0;
  };

  void accept_clients();
  bool evict_an_idle_client();
  void read_client(std::uint64_t id);
  void write_client(std::uint64_t id);
  void handle_frame(std::uint64_t id, client& c, std::string_view body);
  // bytes: the frame's size, counted against the limits while its job runs.
  void submit(std::uint64_t id, client& c, submit_request&& r, std::size_t bytes);
  std::size_t batch_size(const submit_request& r, std::size_t bytes, const task_counters& counted) const;
  void flush_batch(std::uint64_t id, client& c);
  void send_line(std::uint64_t id, client& c, json_call call, const batched_line& line, const job_options& opts,
                 std::size_t bytes);
  void in_flight_now(client& c, std::uint64_t seq, in_flight job, std::size_t lines, std::size_t bytes);
  std::function<void(std::string)> deliverer(std::uint64_t id, std::uint64_t seq, std::size_t lines, std::size_t bytes);
  std::optional<std::string> admission(request_id rid, std::size_t bytes) const;
  std::string refusal(const request_error& e, std::size_t bytes) const;
  std::string kill(const kill_request& r);
  std::string scale(const scale_request& r);
  // Adds, changes (EPOLL_CTL_MOD) or removes what epoll watches; false, logged, if it cannot.
  bool watch(int op, int fd, std::uint32_t events, std::uint64_t key);
  void handle_signals();
  void deliver_completions();
  void sweep_idle_clients();
  void begin_stop(bool graceful);
  // False if the client had to be dropped.
  bool update_interest(std::uint64_t id, client& c);
  void drop(std::uint64_t id);
  void end_of_requests(std::uint64_t id, client& c);
  void consume_input(client& c, std::size_t n);
  void respond(client& c, std::string_view body);
  void fail_and_close(std::uint64_t id, client& c, std::string_view type, std::string_view message);
  void watch_listener(bool on);
  std::string status_line() const;  // for systemd's STATUS=
  void announce_status() const;
  // WATCHDOG=1 when due; returns the milliseconds until the next one is (or the cap).
  int pet_watchdog(int cap_ms);
  // After a HUP: READY=1 again once no worker of before it is left.
  void check_reload_done();

  pool& pool_;
  owned_fd listener_;
  owned_fd signals_;
  owned_fd completions_ready_;  // eventfd
  owned_fd epoll_;
  server_settings settings_;
  metrics metrics_;
  std::map<std::uint64_t, client> clients_;
  std::uint64_t next_client_ = 1;
  std::uint64_t next_job_ = 1;
  std::size_t jobs_ = 0;            // in flight, all clients
  std::size_t request_bytes_ = 0;   // their arguments, all clients
  std::size_t unfinished_bytes_ = 0;  // of frames still arriving, all clients: counted against max_request_bytes too
  bool listening_ = true;           // off while out of file descriptors

  std::mutex completions_mutex_;
  std::vector<completion> completions_;  // filled on the pool's thread
  std::vector<completion> delivering_;   // swapped with it: both keep their room
  batch batch_;                          // of the client being read

  std::optional<outside_jobs> outside_;
  bool stopping_ = false;
  std::optional<clock::time_point> drain_until_;

  const systemd_notifier& systemd_;
  clock::time_point next_pet_{};
  std::vector<pid_t> replacing_;  // pids a HUP's rolling replacement has yet to replace
  bool reloading_ = false;
};

}  // namespace parallelcode::control
