#pragma once

// The library's parent side: one pool, as the small types it is made of.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <parallelcode/detail/job_state.hpp>
#include <parallelcode/info.hpp>
#include <parallelcode/options.hpp>

#include "fork_server_link.hpp"
#include "job_queue.hpp"
#include "region.hpp"
#include "submission_inbox.hpp"
#include "unique_fd.hpp"
#include "wake.hpp"
#include "worker_slot.hpp"

namespace parallelcode::detail {

// Watches fd for input; throws std::system_error.
void add_to_epoll(int epoll, int fd);

class pool_impl {
 public:
  pool_impl() = default;
  pool_impl(const pool_impl&) = delete;
  pool_impl& operator=(const pool_impl&) = delete;
  ~pool_impl();

  void start(const options& opts);
  void submit(job_ptr job, const job_options& opts);
  bool kill(pid_t pid);
  std::vector<worker_info> workers() const;
  std::size_t running_slots() const;
  pool_stats stats() const;
  void free();
  // From ~pool: false, or true if called on the pool's own thread (a callback), which
  // then frees the pool once the callback returns and deletes it: the caller lets go.
  bool end_from_own_thread() noexcept;
  bool drain(clock::duration timeout);
  void resize(unsigned n);
  void replace_workers();
  // True in a process forked from the one that started the pool.
  bool inherited() const noexcept;

  void on_worker_spawn(std::function<void(const worker_info&)> f);
  void on_worker_exit(std::function<void(const worker_exit&)> f);
  void on_crash_loop(std::function<void(const worker_info&, unsigned, std::chrono::milliseconds)> f);
  void on_fork_server_lost(std::function<void(pid_t)> f);

 private:
  enum class phase { stopped, starting, running, draining, stopping };
  bool stopping() const noexcept { return phase_ == phase::stopping; }  // free() ends the pool

  // What one pass of the pool's thread leaves to do once it lets go of the lock.
  struct outcome {
    std::vector<job_ptr> jobs;                   // jobs with events to publish
    std::vector<std::function<void()>> notices;  // worker events for the host
    void fire() noexcept;
  };

  // Public-facing helpers (pool.cpp).
  void accept_locked(job_ptr job, outcome& out);  // queues it, or fails it if the pool takes none
  bool take_inbox_locked(outcome& out);            // accepts what waits in the inbox, oldest first; false if none
  void release_locked(outcome& out);  // once its thread ended: refuses the inbox, gives back memory and fds
  std::string refusal_locked() const;
  worker_info info(const worker_slot& slot, clock::time_point now = clock::now()) const;
  worker_info info(const worker_slot& slot, const process& p, clock::time_point now = clock::now()) const;  // as if p served it
  void move_to_back(int id);

  // The pool's thread, and what it waits for (pool_thread.cpp).
  void run();
  void delete_orphaned() noexcept;  // the end of run() for a pool destroyed from its callback
  void serve();
  bool step(outcome& out);
  bool results_pending() const noexcept;  // reads watched_: runs without the lock
  bool has_work_locked(clock::time_point now) const;
  bool tick_waits_locked() const;  // queued jobs wait for a tick, and a worker could take one
  bool tick_due_locked(clock::time_point now) const;
  clock::time_point next_timer_locked() const;  // the earliest respawn, restart, deadline or kill
  clock::duration sleep_budget_locked(clock::time_point now) const;
  bool start_fork_server(outcome& out);
  void fork_server_lost(outcome& out);
  void handle_report(const fs_report& r, unique_fd pidfd, outcome& out);
  bool read_results(worker_slot& slot, process& p, outcome& out);
  void handle_frame(worker_slot& slot, process& p, const frame_reader& frame, outcome& out);
  void job_ended(worker_slot& slot, process& p);
  void process_exited(worker_slot& slot, process& p, int code, int status, outcome& out);
  void became_ready(worker_slot& slot, process& p, outcome& out);
  void promote(worker_slot& slot);
  void replace_next();           // the next slot of a replace_workers() pass
  void forget_retired_slots();   // drops removed slots once their processes are gone
  bool wants_next(const worker_slot& slot) const;
  void spawn(worker_slot& slot);
  void schedule_respawn(worker_slot& slot, outcome& out);
  void end_process(worker_slot& slot, process& p, exit_reason why);
  void retire_if_idle(process& p);
  void check_limits(worker_slot& slot, process& p);
  bool check_timeouts(clock::time_point now, outcome& out);
  bool escalate_kills(clock::time_point now);
  void lose_jobs(worker_slot& slot, process& p, int signal, int exit_status, outcome& out);
  void end_all(const std::string& why, outcome& out);

  // Dispatch (dispatch.cpp).
  bool dispatch(outcome& out);
  worker_slot* pick(const pool_job& job);  // where the job goes now, if anywhere
  worker_slot* pick_ahead(const pool_job& job);  // a busy worker to hand it to ahead, if any
  void begin_run(worker_slot& slot, process& p, pool_job job, clock::time_point now, outcome& out);
  void notice_claimed(worker_slot& slot, process& p, outcome& out);  // ahead jobs its worker took
  void steal_back(process& p);  // its unclaimed ahead jobs, to the front of the queue
  bool steal_from_stuck(clock::time_point now);
  bool flush(process& p);
  bool can_take(const worker_slot& slot) const;
  template <class Takes>
  worker_slot* first_in_order(const pool_job& job, Takes takes);
  clock::time_point next_steal_locked() const;  // when a busy worker's ahead jobs may be stuck
  bool claims_pending() const;  // a worker took an ahead job the pool has not yet seen
  bool has_outbox_room(const process& p) const;

  // Every process of every slot: current, next and leaving.
  template <class F>
  void for_each_process(F f) {
    each_process(slots_, f);
  }
  template <class F>
  void for_each_process(F f) const {
    each_process(slots_, f);
  }
  template <class Slots, class F>
  static void each_process(Slots& slots, F& f) {
    for (auto& slot : slots) {
      if (slot.current) f(slot, *slot.current);
      if (slot.next) f(slot, *slot.next);
      for (auto& p : slot.leaving) f(slot, *p);
    }
  }

  // Its life: the lock, the phase, why it failed, its thread.
  mutable adaptive_mutex mutex_;
  std::condition_variable_any changed_;  // start() waits for ready workers, drain() for idle ones
  phase phase_ = phase::stopped;
  std::exception_ptr start_failure_;
  std::string broken_;      // why the pool takes no more jobs, when it cannot go on
  std::string last_death_;  // how the last worker that died at start-up ended
  std::atomic<unsigned> fork_generation_{0};
  options opts_;
  std::unique_ptr<std::thread> thread_;
  bool orphaned_ = false;  // destroyed from a callback: the pool's thread deletes it (only that thread touches it)

  // What its thread watches: shared memory, the doorbell, the fork server.
  region shm_;
  unique_fd doorbell_;  // eventfd: wakes the pool's thread from epoll
  unique_fd epoll_;
  fork_server_link link_;

  // Its workers.
  std::deque<worker_slot> slots_;        // by id; a deque keeps them in place as it grows
  std::vector<process*> by_channel_;     // the process on each channel, or none
  std::vector<process*> watched_;        // the pool's thread's copy of by_channel_, to spin on without the lock
  std::vector<int> order_;               // slot ids, front first
  std::deque<int> to_replace_;           // slots a replace_workers() pass has yet to do
  int replacing_ = -1;                   // the slot it is doing now
  std::minstd_rand jitter_{std::random_device{}()};

  // Its jobs.
  job_queue queue_;
  // Open while starting or running; close() waits for submitters inside, whose
  // doorbell and shared sleeping flag must outlive them.
  submission_inbox inbox_;
  std::atomic<std::uint64_t> next_id_{0};  // submit() numbers jobs before any lock
  std::uint64_t cancellations_seen_ = 0;
  std::size_t timed_jobs_ = 0;           // jobs in flight with a deadline
  clock::time_point last_batch_{};
  clock::time_point last_busy_;  // the pool's thread's last pass with work
  pool_stats stats_;

  std::function<void(const worker_info&)> on_spawn_;
  std::function<void(const worker_exit&)> on_exit_;
  std::function<void(const worker_info&, unsigned, std::chrono::milliseconds)> on_crash_loop_;
  std::function<void(pid_t)> on_fork_server_lost_;
};

}  // namespace parallelcode::detail
