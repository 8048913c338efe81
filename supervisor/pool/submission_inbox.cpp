// submission_inbox: the push, the turn-around of the stack, and the closing wait.

#include "submission_inbox.hpp"

#include <thread>

namespace parallelcode::detail {

void submission_inbox::close() noexcept {
  gate_.fetch_and(~std::uint32_t{1}, std::memory_order_seq_cst);
  // Those inside push a job and ring the doorbell: a few instructions, no lock.
  while (gate_.load(std::memory_order_acquire) > 1) std::this_thread::yield();
}

void submission_inbox::push_now(job_ptr job) noexcept {
  job_state_base* raw = job.get();
  raw->inbox_ref = std::move(job);
  raw->next_in_inbox = top_.load(std::memory_order_relaxed);
  while (!top_.compare_exchange_weak(raw->next_in_inbox, raw, std::memory_order_seq_cst, std::memory_order_relaxed)) {
  }
}

job_state_base* submission_inbox::take_all() noexcept {
  job_state_base* newest = top_.exchange(nullptr, std::memory_order_acquire);
  job_state_base* oldest = nullptr;  // a stack: turn it around
  while (newest) {
    job_state_base* next = std::exchange(newest->next_in_inbox, oldest);
    oldest = std::exchange(newest, next);
  }
  return oldest;
}

}  // namespace parallelcode::detail
