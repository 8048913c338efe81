#pragma once

// The pool's per-job records and the queue of those waiting for a worker.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <utility>

#include <parallelcode/detail/job_state.hpp>

namespace parallelcode::detail {

using job_ptr = std::shared_ptr<job_state_base>;

// A job as the pool keeps it, by value in its queue and its workers' deques: the
// state of its runs stays here, off the job_state its handle shares.
struct pool_job {
  explicit pool_job(job_ptr j) noexcept : job(std::move(j)) {}

  job_ptr job;
  unsigned attempt = 0;        // runs so far
  int avoid = -1;              // the worker slot it last died on
  clock::time_point began;     // when its current run started
  clock::time_point deadline;  // of the current run, when timeout > 0
  std::uint64_t frame_at = 0;  // ahead and in the ring: where its frame starts
  bool ahead = false;          // handed to a busy worker, to run when it frees up
  bool in_ring = false;        // ahead: its frame is wholly in the ring

  job_state_base* operator->() const noexcept { return job.get(); }
};

// The jobs waiting for a worker, oldest first, and the payload bytes they hold:
// submit() reads that without the lock.
class job_queue {
 public:
  bool empty() const noexcept { return jobs_.empty(); }
  std::size_t size() const noexcept { return jobs_.size(); }
  std::size_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }
  const pool_job& front() const noexcept { return jobs_.front(); }
  auto begin() noexcept { return jobs_.begin(); }
  auto end() noexcept { return jobs_.end(); }

  void push_back(pool_job job) {
    add(job);
    jobs_.push_back(std::move(job));
  }
  void push_front(pool_job job) {
    add(job);
    jobs_.push_front(std::move(job));
  }
  pool_job pop_front() {
    pool_job job = std::move(jobs_.front());
    jobs_.pop_front();
    bytes_.fetch_sub(job->payload.size(), std::memory_order_relaxed);
    return job;
  }
  template <class Pred>
  std::size_t erase_if(Pred pred) {
    return std::erase_if(jobs_, [&](const pool_job& job) {
      if (!pred(job)) return false;
      bytes_.fetch_sub(job->payload.size(), std::memory_order_relaxed);
      return true;
    });
  }
  void clear() {
    jobs_.clear();
    bytes_.store(0, std::memory_order_relaxed);
  }

 private:
  void add(const pool_job& job) { bytes_.fetch_add(job->payload.size(), std::memory_order_relaxed); }

  std::deque<pool_job> jobs_;
  std::atomic<std::size_t> bytes_{0};
};

}  // namespace parallelcode::detail
