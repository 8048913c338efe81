#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <parallelcode/detail/job_state.hpp>
#include <parallelcode/info.hpp>
#include <parallelcode/options.hpp>

#include "fork_server.hpp"
#include "frame.hpp"
#include "region.hpp"
#include "ring.hpp"
#include "unique_fd.hpp"

namespace parallelcode::detail {

using job_ptr = std::shared_ptr<job_state_base>;

// One worker slot: its id and rings stay, its process comes and goes.
struct worker_slot {
  explicit worker_slot(std::uint64_t frame_limit) : reader(frame_limit) {}

  int id = 0;
  unsigned channel = 0;
  worker_state state = worker_state::starting;
  bool alive = false;    // a process is up in it (spawned, not yet reaped)
  bool corrupt = false;  // it wrote garbage: killed, waiting to be reaped
  pid_t pid = 0;
  unique_fd pidfd;
  unsigned running = 0;
  std::uint64_t done = 0;
  unsigned respawns = 0;
  std::optional<clock::time_point> respawn_at;  // a failed fork is retried then

  std::deque<job_ptr> in_flight;  // handed to this worker, oldest first
  std::deque<job_ptr> outbox;     // the tail of in_flight not yet wholly in the ring
  std::uint64_t outbox_sent = 0;  // bytes of outbox.front()'s frame written
  ring_writer jobs;
  ring_reader results;
  frame_reader reader;
};

class pool_impl {
 public:
  pool_impl() = default;
  pool_impl(const pool_impl&) = delete;
  pool_impl& operator=(const pool_impl&) = delete;
  ~pool_impl();

  void start(const options& opts);
  void submit(job_ptr job);
  bool kill(pid_t pid);
  std::vector<worker_info> workers() const;
  pool_stats stats() const;
  void free();
  // True in a process forked from the one that started the pool.
  bool inherited() const noexcept;

 private:
  enum class phase { stopped, starting, running, stopping };
  using events = std::vector<job_ptr>;  // jobs with something to publish

  // The pool's thread.
  void run();
  void serve(fork_server& server);
  bool step(fork_server& server, events& ev);
  bool handle_report(fork_server& server, const fs_report& r, unique_fd pidfd, events& ev);
  bool read_results(worker_slot& w, events& ev);
  void handle_frame(worker_slot& w, const frame_reader& frame, events& ev);
  void worker_died(fork_server& server, worker_slot& w, int code, int status, events& ev);
  bool dispatch(events& ev);
  bool flush(worker_slot& w);
  void spawn(fork_server& server, worker_slot& w);
  bool results_pending() const noexcept;
  bool has_work_locked() const;
  bool tick_due_locked(clock::time_point now) const;
  bool can_take(const worker_slot& w) const;
  std::chrono::nanoseconds sleep_budget_locked() const;
  void fork_server_lost(fork_server& server, events& ev);
  void end_all(const std::string& why, events& ev);

  std::string refusal_locked() const;  // why a job is refused now; empty if it is not
  worker_info info(const worker_slot& w) const;
  void move_to_back(int id);
  static void publish(events& ev) noexcept;

  mutable std::mutex mutex_;
  std::condition_variable changed_;  // start() waits on it for ready workers
  phase phase_ = phase::stopped;
  bool stop_ = false;
  std::exception_ptr start_failure_;
  std::string broken_;  // why the pool takes no more jobs, when it cannot go on
  std::atomic<unsigned> fork_generation_{0};

  options opts_;
  region shm_;
  unique_fd doorbell_;  // eventfd: wakes the pool's thread from epoll
  std::unique_ptr<std::thread> thread_;
  std::vector<std::unique_ptr<worker_slot>> slots_;  // by id
  std::vector<int> order_;                            // ids, front first
  std::deque<job_ptr> queue_;
  pool_stats stats_;
  std::uint64_t next_id_ = 0;
  clock::time_point last_batch_{};
};

}  // namespace parallelcode::detail
