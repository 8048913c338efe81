#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <parallelcode/detail/job_state.hpp>
#include <parallelcode/info.hpp>

namespace parallelcode {

// What pool::job returns: the job's events and its result. Movable; dropping it
// does not cancel the job, and callbacks attached to it still fire.
template <class R>
class job_handle {
 public:
  using result_type = R;
  using done_fn = typename detail::job_state<R>::done_fn;

  job_handle() = default;
  explicit job_handle(std::shared_ptr<detail::job_state<R>> state) : state_(std::move(state)) {}

  // An empty handle (default-constructed or moved from) has no job: the calls
  // below throw std::invalid_argument on it, except wait_for, which returns true.
  bool valid() const noexcept { return state_ != nullptr; }
  std::uint64_t id() const { return state().id; }

  // The worker that picked the job up (the start event); blocks until then.
  // Throws the job's error if it ended without reaching a worker.
  worker_info worker() const { return state().wait_assigned(); }

  // The result; blocks until the job ends and throws its job_error if it failed.
  std::add_lvalue_reference_t<std::add_const_t<R>> result() const& {
    state().wait_ended();
    state().rethrow_error();
    if constexpr (!std::is_void_v<R>) return *state_->value;
  }
  // Moves the result out, once the job's callbacks, which may be reading it, are done.
  // In a callback of this job: at once in the last one that reads it, std::logic_error
  // in one with others still to run.
  R result() && {
    state().wait_published();
    state().rethrow_error();
    if constexpr (!std::is_void_v<R>) return std::move(*state_->value);
  }

  // True once the job has ended, with a result or an error; never throws.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const noexcept {
    if (!state_) return true;
    // Clamped in floating point: a cast of hours::max() to nanoseconds overflows.
    if (std::chrono::duration<double>(timeout) > std::chrono::hours(24 * 365))
      return state_->wait_ended_for(std::chrono::nanoseconds::max());
    return state_->wait_ended_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }
  void wait() const { state().wait_ended(); }

  // Takes the job back if no worker has it yet: it then fails with job_cancelled
  // and true is returned. A job already on a worker runs on (false).
  bool cancel() { return state().cancel(); }

  // Callbacks run on the pool's thread, or at once on the caller's if the event
  // already happened; each fires exactly once. They must not throw or block: on the
  // pool's thread, worker(), result() and wait() for a job of the same pool that has
  // not ended throw std::system_error (resource_deadlock_would_occur) at once, and
  // wait_for returns false at once, since only that thread could end it.
  job_handle& on_start(std::function<void(const worker_info&)> f) {
    state().add_on_start(std::move(f));
    return *this;
  }
  job_handle& on_done(done_fn f) {
    state().add_on_done(std::move(f));
    return *this;
  }
  job_handle& on_error(std::function<void(const job_error&, const job_context&)> f) {
    state().add_on_error(std::move(f));
    return *this;
  }

 private:
  detail::job_state<R>& state() const {
    if (!state_) throw std::invalid_argument("parallelcode: this job_handle holds no job");
    return *state_;
  }

  std::shared_ptr<detail::job_state<R>> state_;
};

}  // namespace parallelcode
