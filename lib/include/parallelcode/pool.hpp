#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <ranges>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>
#include <sys/types.h>

#include <parallelcode/detail/invoke.hpp>
#include <parallelcode/detail/job_state.hpp>
#include <parallelcode/detail/task_entry.hpp>
#include <parallelcode/errors.hpp>
#include <parallelcode/export.hpp>
#include <parallelcode/info.hpp>
#include <parallelcode/job_handle.hpp>
#include <parallelcode/map_handle.hpp>
#include <parallelcode/options.hpp>

namespace parallelcode {

namespace detail {
class pool_impl;
}

// A pool of worker processes forked from this one. Jobs go to the first worker
// with a free slot, which then moves to the back; dead workers are respawned.
class PARALLELCODE_API pool {
 public:
  pool();
  // free(). From one of the pool's own callbacks, the pool's thread finishes the
  // free once the callback returns (the others it still fires must not use the pool).
  ~pool();
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  // Forks the fork server and the workers; returns once every worker is ready.
  // Throws std::invalid_argument for bad options, std::system_error if it cannot start.
  void start(const options& opts = {});

  // Queues fn(data) and returns at once. fn is a function pointer or a lambda
  // without captures; data and the result are cereal-serializable.
  template <class F, class T>
  auto job(F fn, T&& data, const job_options& opts = {});

  // Queues the task registered under name (task.hpp, named_tasks.hpp). Throws std::invalid_argument
  // for an unknown name, or when data or R are not the task's types.
  template <class R, class T>
  job_handle<R> task(std::string_view name, T&& data, const job_options& opts = {});

  // Runs fn on every item of inputs (any input range), in chunks of many items a job,
  // and returns their results in input order (map_handle.hpp). Without a chunk size it
  // runs a first chunk of up to 32 items, waits for it up to 2 ms, and sizes the rest
  // from its wall time. On a pool not running, every chunk fails with job_cancelled.
  template <class F, class Range>
  auto map(F fn, Range&& inputs, const map_options& opts = {});
  // SIGKILLs the worker with this pid if it is one of this pool's; false otherwise.
  bool kill(pid_t pid);

  // The workers in pool order: the front one gets the next job.
  std::vector<worker_info> workers() const;
  pool_stats stats() const;

  // Stops every process of the pool and releases its memory; queued and running
  // jobs fail with job_cancelled. The pool can be started again.
  void free();

  // Takes no new job, lets the queued and running ones finish until the timeout,
  // then free()s. True if every job had ended by then. A job() racing it is
  // either refused (its handle has ended when job() returns) or runs.
  bool drain(std::chrono::steady_clock::duration timeout);

  // Grows or shrinks the pool to n workers (1 to options::max_workers). Removed
  // workers finish their running jobs first; queued jobs stay queued.
  void resize(unsigned n);
  // Replaces every worker by a new process, one slot at a time, each replacement
  // ready before the worker it replaces stops taking jobs.
  void replace_workers();

  // Worker events, for logging and counting. They run on the pool's thread: keep
  // them short, do not block, do not throw. Set them before start().
  void on_worker_spawn(std::function<void(const worker_info&)> f);  // a new process is ready
  void on_worker_exit(std::function<void(const worker_exit&)> f);   // a process ended
  // A slot's processes keep dying at start-up: the next one waits `delay`.
  void on_crash_loop(std::function<void(const worker_info&, unsigned deaths, std::chrono::milliseconds delay)> f);
  // The fork server died (its workers with it); a new one is being started.
  void on_fork_server_lost(std::function<void(pid_t)> f);

 private:
  template <class R, class D>
  job_handle<R> enqueue(detail::invoke_fn invoke, std::uintptr_t fn, const D& data, const job_options& opts);
  void submit(std::shared_ptr<detail::job_state_base> job, const job_options& opts);
  std::size_t running_slots() const;  // workers x concurrency, at least 1

  std::unique_ptr<detail::pool_impl> impl_;
};

template <class F, class T>
auto pool::job(F fn, T&& data, const job_options& opts) {
  using D = detail::data_t<T>;
  static_assert(detail::is_job_function_v<F>,
                "parallelcode::job: the function must not capture anything: it runs in another "
                "process, so pass its state through data. Use a function pointer or a lambda with [].");
  static_assert(std::is_invocable_v<F&, D&&>, "parallelcode::job: the function cannot be called with this data");
  return enqueue<detail::job_result_t<F, D>>(&detail::invoke<F, D>, detail::function_address(fn),
                                             static_cast<const D&>(data), opts);
}

template <class F, class Range>
auto pool::map(F fn, Range&& inputs, const map_options& opts) {
  using D = detail::data_t<std::ranges::range_reference_t<Range>>;
  static_assert(detail::is_job_function_v<F>,
                "parallelcode::map: the function must not capture anything: it runs in another "
                "process. Use a function pointer or a lambda with [].");
  static_assert(std::is_invocable_v<F&, D&&>, "parallelcode::map: the function cannot be called with the items");
  using R = detail::job_result_t<F, D>;
  static_assert(!std::is_void_v<R>, "parallelcode::map: the function must return a value (a bool will do)");
  const std::size_t slots = running_slots();
  std::vector<job_handle<detail::map_chunk_result<R>>> chunks;
  std::vector<std::size_t> sizes;
  std::size_t items = 0, chunk_size = opts.chunk_size;
  auto it = std::ranges::begin(inputs);
  const auto end = std::ranges::end(inputs);
  auto send = [&](std::size_t n) {
    detail::map_chunk<D> chunk{detail::function_address(fn), {}};
    chunk.items.reserve(n);
    for (; chunk.items.size() < n && it != end; ++it) chunk.items.emplace_back(*it);
    if (chunk.items.empty()) return false;
    sizes.push_back(chunk.items.size());
    items += chunk.items.size();
    chunks.push_back(job(&detail::run_map_chunk<F, D>, std::move(chunk), opts.chunk));
    return true;
  };
  if (chunk_size == 0) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!send(32)) return map_handle<R>{};
    chunks.front().wait_for(std::chrono::milliseconds(2));
    std::size_t remaining = 0;
    if constexpr (std::ranges::sized_range<Range>) remaining = std::ranges::size(inputs) - items;
    chunk_size = detail::map_chunk_size(remaining, slots, sizes.front(), std::chrono::steady_clock::now() - t0);
  }
  while (send(chunk_size)) {
  }
  return map_handle<R>(std::move(chunks), std::move(sizes), items);
}

template <class R, class T>
job_handle<R> pool::task(std::string_view name, T&& data, const job_options& opts) {
  using D = detail::data_t<T>;
  const detail::task_entry& entry = detail::checked_task(name, typeid(D), typeid(R));
  return enqueue<R>(entry.invoke, entry.fn, static_cast<const D&>(data), opts);
}

template <class R, class D>
job_handle<R> pool::enqueue(detail::invoke_fn invoke, std::uintptr_t fn, const D& data, const job_options& opts) {
  auto state = std::make_shared<detail::job_state<R>>();
  state->invoke = invoke;
  state->fn = fn;
  try {
    const detail::pin_scope pins(state->shared);  // its shared_bytes live as long as the job
    detail::encode(state->payload, data);
  } catch (const detail::codec_error& e) {
    state->fail(payload_error(std::string("parallelcode: the job's data: ") + e.what()));
    state->publish();
    return job_handle<R>(std::move(state));
  }
  submit(state, opts);
  return job_handle<R>(std::move(state));
}

}  // namespace parallelcode
