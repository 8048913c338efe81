#pragma once

// The state a job_handle shares with the pool. The pool records events under its
// own lock (assign, finish, fail) and fires callbacks after it lets go (publish),
// so a callback may call back into the pool or the handle.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

#include <parallelcode/detail/buffer.hpp>
#include <parallelcode/detail/invoke.hpp>
#include <parallelcode/errors.hpp>
#include <parallelcode/info.hpp>
#include <parallelcode/shared_bytes.hpp>

namespace parallelcode::detail {

using clock = std::chrono::steady_clock;

// Counts cancel() calls in this process: a pool sweeps cancelled jobs out of its
// queue when it sees the count move.
std::uint64_t cancellations() noexcept;

// Marks the calling thread, for its life, as the thread of this pool: there a wait
// for a job of that pool which has not ended could never end, and throws.
void serve_as_pool_thread(const void* pool) noexcept;

class PARALLELCODE_API job_state_base {
 public:
  using start_fn = std::function<void(const worker_info&)>;
  using error_fn = std::function<void(const job_error&, const job_context&)>;

  job_state_base() = default;
  job_state_base(const job_state_base&) = delete;
  job_state_base& operator=(const job_state_base&) = delete;
  virtual ~job_state_base() = default;

  // What the pool sends and how it runs it: set by job() and submit(), then used
  // only by the pool, under its lock. The state of its runs (attempts, deadline,
  // place in a ring) is the pool's own, in its per-job records, not here.
  std::uint64_t id = 0;
  const void* owner = nullptr;  // the pool it was submitted to
  invoke_fn invoke = nullptr;
  std::uintptr_t fn = 0;
  byte_buffer payload;
  shared_pins shared;  // the shared_bytes in payload: held until the job ends
  clock::time_point queued_at;
  // 0: none. From submit until the pool takes the job, job_options::timeout, or
  // pool_default_timeout for the pool's.
  std::chrono::milliseconds timeout{0};
  unsigned retries = 0;  // runs left after a worker death
  // Links of the pool's lock-free inbox, where a job waits when submitted while the
  // pool's lock is taken: here rather than in a node of the pool's so that
  // submitting allocates nothing more. The next one in, and the reference that keeps it alive.
  job_state_base* next_in_inbox = nullptr;
  std::shared_ptr<job_state_base> inbox_ref;

  // Who has the job while it waits in the queue: the pool taking it for a worker,
  // or cancel() taking it back. Whoever moves it from `queued` first wins.
  enum : int { queued, taken, cancelled };
  std::atomic<int> claim{queued};
  static constexpr std::chrono::milliseconds pool_default_timeout = std::chrono::milliseconds::min();

  // Pool side: record an event that happened at `at`; runs no user code. A retried
  // job is assigned again, with its attempt (1 for the first run).
  void assign(const worker_info& w, clock::time_point at, unsigned attempt);
  bool finish(const std::byte* result, std::size_t size, clock::time_point at);  // false: the result did not decode
  template <class E>
  void fail(E error) {
    auto ref = std::make_shared<const E>(error);
    fail(std::move(ref), std::make_exception_ptr(std::move(error)));
  }
  // Pool side, with no lock held: runs each recorded event's callbacks once, start
  // before end. A callback that throws ends the process, as in a std::thread.
  void publish() noexcept;

  // Handle side.
  worker_info wait_assigned();  // throws the job's error if it ended unassigned
  void wait_ended();
  // Ended, and its callbacks have run; a job's own callback may take the result in the
  // last of them that reads it (std::logic_error in an earlier one).
  void wait_published();
  bool wait_ended_for(std::chrono::nanoseconds limit);  // nanoseconds::max(): no limit
  void rethrow_error();  // after wait_ended
  bool cancel();         // true if the job was still queued: it fails with job_cancelled
  void add_on_start(start_fn f);
  void add_on_error(error_fn f);

 protected:
  // Under mutex_: decodes and keeps the result; throws codec_error.
  virtual void store_result(const std::byte* result, std::size_t size) = 0;
  // A done callback, bound by the typed side to the result it reads.
  using bound_done_fn = std::function<void(const job_context&)>;
  // Under mutex_, before the end is published: queues a done callback for publish().
  void add_done_locked(bound_done_fn f);

  job_context context_locked() const;
  void fail(std::shared_ptr<const job_error> ref, std::exception_ptr error);
  // Under mutex_: true once the end was published and it is a success / a failure.
  bool succeeded_locked() const { return end_published_ && !error_; }
  bool end_published_locked() const { return end_published_; }

  mutable std::mutex mutex_;

 private:
  void end_locked(clock::time_point at);
  bool spin_for(int stage) const;  // true once progress_ reached stage; spins only while that looks near
  bool on_own_pool_thread() const noexcept;  // where nothing could end it while the caller waits
  bool may_take_locked(std::unique_lock<std::mutex>& lock);  // wait_published's test; may publish, may throw

  std::condition_variable changed_;
  // What waiters may spin on without the lock. settled: ended, and its callbacks have run.
  enum : int { waiting = 0, started = 1, ended = 2, settled = 3 };
  std::atomic<int> progress_{waiting};
  bool assigned_ = false;
  bool ended_ = false;
  bool start_published_ = false;
  bool end_published_ = false;
  bool publishing_ = false;
  bool publish_again_ = false;
  std::uint32_t done_left_ = 0;  // done callbacks still to run after the one running now; read by the publisher
  std::thread::id publisher_;    // while publishing_
  worker_info worker_;
  unsigned attempt_ = 0;
  clock::time_point started_at_;
  clock::time_point ended_at_;
  std::exception_ptr error_;                // rethrown by result()
  std::shared_ptr<const job_error> error_ref_;  // the same error, for on_error
  // Callbacks waiting for their event; most jobs have none, and no room for them.
  struct listeners {
    std::vector<start_fn> on_start;
    std::vector<error_fn> on_error;
    std::vector<bound_done_fn> on_done;
  };
  listeners& listeners_locked();
  std::unique_ptr<listeners> listeners_;
};

template <class R>
struct done_callback {
  using type = std::function<void(const R&, const job_context&)>;
};
template <>
struct done_callback<void> {
  using type = std::function<void(const job_context&)>;
};

template <class R>
class job_state final : public job_state_base {
 public:
  using done_fn = typename done_callback<R>::type;

  // The result, valid after wait_ended when the job did not fail.
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};

  void add_on_done(done_fn f) {
    std::unique_lock lock(mutex_);
    if (!end_published_locked()) {
      // Runs on the publishing thread, which holds a reference to the job.
      add_done_locked([this, f = std::move(f)](const job_context& ctx) mutable { call(f, ctx); });
      return;
    }
    if (!succeeded_locked()) return;
    const job_context ctx = context_locked();
    lock.unlock();
    call(f, ctx);
  }

 private:
  void store_result(const std::byte* result, std::size_t size) override {
    if constexpr (std::is_void_v<R>) {
      (void)result;
      (void)size;
      value = true;
    } else {
      value.emplace(decode<R>(result, size));
    }
  }

  // A callback that throws ends the process, as a throwing std::thread would.
  void call(done_fn& f, const job_context& ctx) noexcept {
    if constexpr (std::is_void_v<R>)
      f(ctx);
    else
      f(*value, ctx);
  }
};

}  // namespace parallelcode::detail
