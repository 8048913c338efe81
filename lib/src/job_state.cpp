#include <parallelcode/detail/job_state.hpp>

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
}  // namespace

void job_state_base::assign(const worker_info& w, clock::time_point at) {
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
  for (;;) {
    publish_again_ = false;
    if (assigned_ && !start_published_) {
      start_published_ = true;
      std::vector<start_fn> fire;
      if (listeners_) fire = std::move(listeners_->on_start);
      const worker_info w = worker_;
      lock.unlock();
      for (auto& f : fire) f(w);
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
      for (auto& f : done) f(ctx);
      if (e)
        for (auto& f : failed) f(*e, ctx);
      lock.lock();
      continue;
    }
    if (!publish_again_) break;
  }
  publishing_ = false;
  if (end_published_) progress_.store(settled, std::memory_order_release);
  changed_.notify_all();
}

worker_info job_state_base::wait_assigned() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return assigned_ || ended_; });
  if (!assigned_) std::rethrow_exception(error_);
  return worker_;
}

bool job_state_base::spin_for(int stage) const {
  auto reached = [&](int s) { return progress_.load(std::memory_order_acquire) >= s; };
  if (!spin_until([&] { return reached(started); }, wait_spin_queued)) return false;
  if (reached(stage)) return true;
  clock::time_point began;
  {
    std::lock_guard lock(mutex_);
    began = started_at_;
  }
  // A job that has run longer than we would spin is a long one: sleep at once.
  const auto left = wait_spin - (clock::now() - began);
  return left > clock::duration::zero() && spin_until([&] { return reached(stage); }, left);
}

void job_state_base::wait_ended() {
  if (spin_for(ended)) return;
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return ended_; });
}

void job_state_base::wait_published() {
  if (spin_for(settled)) return;
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return end_published_ && !publishing_; });
}

bool job_state_base::wait_ended_for(std::chrono::nanoseconds limit) {
  std::unique_lock lock(mutex_);
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
