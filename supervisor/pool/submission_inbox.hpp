#pragma once

// The submission inbox: a lock-free stack of jobs and the gate in front of it.
//
// Submissions that find the pool's lock taken leave their job here; the lock's
// holder empties it oldest first. The gate says whether it takes any.

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>

#include <parallelcode/detail/job_state.hpp>

namespace parallelcode::detail {

class submission_inbox {
 public:
  using job_ptr = std::shared_ptr<job_state_base>;

  submission_inbox() = default;
  submission_inbox(const submission_inbox&) = delete;
  submission_inbox& operator=(const submission_inbox&) = delete;

  void open() noexcept { gate_.fetch_or(1, std::memory_order_seq_cst); }
  // Refuses pushes from now on and waits for the submitters inside to leave.
  void close() noexcept;

  // If open: pushes job, then runs inside() still within the gate (what it touches,
  // the doorbell, must outlive it: close() waits for it), and returns true. If
  // closed: false, job untouched.
  template <class Inside>
  bool push(job_ptr& job, Inside inside) noexcept {
    if (!(gate_.fetch_add(2, std::memory_order_seq_cst) & 1)) {
      gate_.fetch_sub(2, std::memory_order_relaxed);
      return false;
    }
    push_now(std::move(job));
    inside();
    gate_.fetch_sub(2, std::memory_order_release);
    return true;
  }

  bool empty() const noexcept { return top_.load(std::memory_order_seq_cst) == nullptr; }

  // Hands each job pushed so far to each(job_ptr), oldest first; false if there was none.
  template <class Each>
  bool take(Each each) {
    job_state_base* oldest = take_all();
    if (!oldest) return false;
    while (oldest) {
      job_state_base* next = std::exchange(oldest->next_in_inbox, nullptr);
      each(std::move(oldest->inbox_ref));
      oldest = next;
    }
    return true;
  }

 private:
  void push_now(job_ptr job) noexcept;
  job_state_base* take_all() noexcept;  // the whole stack, turned around: oldest first

  std::atomic<job_state_base*> top_{nullptr};
  // Bit 0: open. The rest counts submitters inside push() now, by twos.
  std::atomic<std::uint32_t> gate_{0};
};

}  // namespace parallelcode::detail
