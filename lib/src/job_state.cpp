#include <parallelcode/detail/job_state.hpp>

#include <stdexcept>
#include <system_error>

#include "wake.hpp"

namespace parallelcode::detail {

namespace {
// A job that has just started often ends within microseconds: a caller that spins
// until it has run this long is not put to sleep and woken again (tens of
// microseconds across cores).
constexpr std::chrono::microseconds wait_spin{50};
// One still waiting for a worker may wait long (behind thousands of others): the
// caller looks only briefly, then sleeps, and leaves the CPU to the pool.
constexpr std::chrono::microseconds wait_spin_queued{5};

// The pool whose thread this is, if any: that thread ends the pool's jobs, so it
// must not wait for one.
thread_local const void* serving_pool = nullptr;
// The job whose callbacks this thread runs now (the innermost, when they nest).
thread_local const job_state_base* publishing_job = nullptr;

// While this thread runs a job's callbacks.
class in_callbacks_of {
 public:
  explicit in_callbacks_of(const job_state_base* job) noexcept : outer_(std::exchange(publishing_job, job)) {}
  ~in_callbacks_of() { publishing_job = outer_; }
  in_callbacks_of(const in_callbacks_of&) = delete;
  in_callbacks_of& operator=(const in_callbacks_of&) = delete;

 private:
  const job_state_base* outer_;
};

[[noreturn]] void throw_would_hang() {
  throw std::system_error(std::make_error_code(std::errc::resource_deadlock_would_occur),
                          "parallelcode: a callback waits for a job that only this thread can end or publish, "
                          "after the callback returns");
}
}  // namespace

void serve_as_pool_thread(const void* pool) noexcept { serving_pool = pool; }

bool job_state_base::on_own_pool_thread() const noexcept { return serving_pool && serving_pool == owner; }

void job_state_base::assign(const worker_info& w, clock::time_point at, unsigned attempt) {
  std::lock_guard lock(mutex_);
  if (ended_) return;
  assigned_ = true;
  worker_ = w;
  started_at_ = at;
  if (progress_.load(std::memory_order_relaxed) == waiting) progress_.store(started, std::memory_order_release);
  attempt_ = attempt;
  changed_.notify_all();
}

bool job_state_base::finish(const std::byte* result, std::size_t size, clock::time_point at) {
  std::lock_guard lock(mutex_);
  if (ended_) return false;
  try {
    const pin_scope pins(shared);  // the only shared_bytes the result may name
    store_result(result, size);
  } catch (const codec_error& e) {
    payload_error error(std::string("parallelcode: the job's result: ") + e.what());
    error_ref_ = std::make_shared<const payload_error>(error);
    error_ = std::make_exception_ptr(std::move(error));
  }
  end_locked(at);
  return !error_;
}

void job_state_base::fail(std::shared_ptr<const job_error> ref, std::exception_ptr error) {
  std::lock_guard lock(mutex_);
  if (ended_) return;
  error_ref_ = std::move(ref);
  error_ = std::move(error);
  end_locked(clock::now());
}

void job_state_base::end_locked(clock::time_point at) {
  ended_ = true;
  ended_at_ = at;
  shared.clear();  // no worker will map them for this job again
  progress_.store(ended, std::memory_order_release);
  changed_.notify_all();
}

job_context job_state_base::context_locked() const {
  job_context ctx;
  ctx.id = id;
  ctx.worker = worker_;
  ctx.attempt = attempt_;
  if (assigned_) {
    ctx.queued = started_at_ - queued_at;
    if (ended_) ctx.running = ended_at_ - started_at_;
  } else if (ended_ && queued_at != clock::time_point{}) {  // one refused by submit() was never queued
    ctx.queued = ended_at_ - queued_at;
  }
  return ctx;
}

job_state_base::listeners& job_state_base::listeners_locked() {
  if (!listeners_) listeners_ = std::make_unique<listeners>();
  return *listeners_;
}

void job_state_base::add_done_locked(bound_done_fn f) { listeners_locked().on_done.push_back(std::move(f)); }

void job_state_base::publish() noexcept {
  std::unique_lock lock(mutex_);
  if (publishing_) {
    publish_again_ = true;  // the thread publishing now picks this up
    return;
  }
  publishing_ = true;
  publisher_ = std::this_thread::get_id();
  for (;;) {
    publish_again_ = false;
    if (assigned_ && !start_published_) {
      start_published_ = true;
      std::vector<start_fn> fire;
      if (listeners_) fire = std::move(listeners_->on_start);
      const worker_info w = worker_;
      lock.unlock();
      if (!fire.empty()) {
        const in_callbacks_of mark(this);
        for (auto& f : fire) f(w);
      }
      lock.lock();
      continue;
    }
    if (ended_ && !end_published_) {
      end_published_ = true;
      start_published_ = true;  // a job that never started never fires start
      const job_context ctx = context_locked();
      // Done callbacks for a success, error callbacks for a failure; the others are dropped.
      std::vector<bound_done_fn> done;
      std::vector<error_fn> failed;
      if (listeners_) {
        if (error_) failed = std::move(listeners_->on_error);
        else done = std::move(listeners_->on_done);
        listeners_.reset();
      }
      const std::shared_ptr<const job_error> e = error_ref_;
      lock.unlock();
      if (!done.empty() || !failed.empty()) {
        const in_callbacks_of mark(this);
        for (std::size_t i = 0; i < done.size(); ++i) {
          done_left_ = static_cast<std::uint32_t>(done.size() - i - 1);
          done[i](ctx);
        }
        done_left_ = 0;
        if (e)
          for (auto& f : failed) f(*e, ctx);
      }
      lock.lock();
      continue;
    }
    if (!publish_again_) break;
  }
  publishing_ = false;
  publisher_ = {};
  if (end_published_) progress_.store(settled, std::memory_order_release);
  changed_.notify_all();
}

worker_info job_state_base::wait_assigned() {
  std::unique_lock lock(mutex_);
  if (!assigned_ && !ended_ && on_own_pool_thread()) throw_would_hang();
  changed_.wait(lock, [&] { return assigned_ || ended_; });
  if (!assigned_) std::rethrow_exception(error_);
  return worker_;
}

bool job_state_base::spin_for(int stage) const {
  auto reached = [&](int s) { return progress_.load(std::memory_order_acquire) >= s; };
  if (!spin_until([&] { return reached(started); }, wait_spin_queued)) return false;
  if (reached(stage)) return true;
  clock::time_point since;
  {
    std::lock_guard lock(mutex_);
    since = started_at_;
  }
  // A job that has run longer than we would spin is a long one: sleep at once.
  const auto left = wait_spin - (clock::now() - since);
  return left > clock::duration::zero() && spin_until([&] { return reached(stage); }, left);
}

void job_state_base::wait_ended() {
  if (progress_.load(std::memory_order_acquire) >= ended) return;
  if (on_own_pool_thread()) {
    std::lock_guard lock(mutex_);
    if (!ended_) throw_would_hang();
    return;
  }
  if (spin_for(ended)) return;
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return ended_; });
}

bool job_state_base::may_take_locked(std::unique_lock<std::mutex>& lock) {
  for (;;) {
    if (end_published_ && !publishing_) return true;
    if (publishing_ && publisher_ == std::this_thread::get_id()) {
      // From a callback of this very job: the rest of its callbacks run on this thread once it returns.
      if (!ended_) throw_would_hang();
      const std::size_t readers = end_published_ ? done_left_ : listeners_ && !error_ ? listeners_->on_done.size() : 0;
      if (publishing_job != this || readers > 0)
        throw std::logic_error(
            "parallelcode: result() && in a callback of the job while other callbacks have yet to read the "
            "result: take it in the last one, or copy it");
      return true;
    }
    if (!ended_) {
      if (on_own_pool_thread()) throw_would_hang();
      return false;
    }
    // Ended, and no one publishes it now. On a thread that runs callbacks it may sit in a batch
    // this very thread fires after the callback returns: its callbacks run here, before it is taken.
    if (publishing_ || (!serving_pool && !publishing_job)) return false;
    lock.unlock();
    publish();
    lock.lock();
  }
}

void job_state_base::wait_published() {
  if (progress_.load(std::memory_order_acquire) == settled) return;
  {
    std::unique_lock lock(mutex_);
    if (may_take_locked(lock)) return;
  }
  if (spin_for(settled)) return;
  std::unique_lock lock(mutex_);
  while (!may_take_locked(lock)) changed_.wait(lock);
}

bool job_state_base::wait_ended_for(std::chrono::nanoseconds limit) {
  std::unique_lock lock(mutex_);
  if (!ended_ && on_own_pool_thread()) return false;  // nothing can end it meanwhile: say so at once
  if (limit == std::chrono::nanoseconds::max()) {
    changed_.wait(lock, [&] { return ended_; });
    return true;
  }
  return changed_.wait_for(lock, limit, [&] { return ended_; });
}

namespace {
std::atomic<std::uint64_t> cancel_count{0};
}

std::uint64_t cancellations() noexcept { return cancel_count.load(std::memory_order_relaxed); }

bool job_state_base::cancel() {
  int expected = queued;
  if (!claim.compare_exchange_strong(expected, cancelled)) return false;
  fail(job_cancelled("parallelcode: the job was cancelled before it started"));
  publish();
  cancel_count.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void job_state_base::rethrow_error() {
  std::lock_guard lock(mutex_);
  if (error_) std::rethrow_exception(error_);
}

void job_state_base::add_on_start(start_fn f) {
  std::unique_lock lock(mutex_);
  if (!start_published_) {
    listeners_locked().on_start.push_back(std::move(f));
    return;
  }
  if (!assigned_) return;
  const worker_info w = worker_;
  lock.unlock();
  f(w);
}

void job_state_base::add_on_error(error_fn f) {
  std::unique_lock lock(mutex_);
  if (!end_published_) {
    listeners_locked().on_error.push_back(std::move(f));
    return;
  }
  if (!error_ref_) return;
  const job_context ctx = context_locked();
  const std::shared_ptr<const job_error> e = error_ref_;
  lock.unlock();
  f(*e, ctx);
}

}  // namespace parallelcode::detail
