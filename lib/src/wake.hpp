#pragma once

// Sleeping and waking across processes. A sleeper publishes "I sleep" in a word of
// shared memory, re-checks its condition, then sleeps on that very word; a waker
// that changed the condition exchanges the word to 0 and wakes it. Sleeping on a
// separate sequence word loses wakeups.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace parallelcode::detail {

static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// Sleeps while word == expected, at most timeout. Shared futex: works across fork.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept;
void futex_wake(std::atomic<std::uint32_t>& word) noexcept;

// Wakes whoever sleeps on flag; true if someone did.
inline bool wake_futex_sleeper(std::atomic<std::uint32_t>& flag) noexcept {
  if (flag.load(std::memory_order_seq_cst) == 0 || flag.exchange(0, std::memory_order_seq_cst) == 0) return false;
  futex_wake(flag);
  return true;
}

// Rings an eventfd if the sleeper behind flag is asleep in epoll.
void wake_eventfd_sleeper(std::atomic<std::uint32_t>& flag, int eventfd) noexcept;

inline void cpu_relax() noexcept { __builtin_ia32_pause(); }

// Spins until ready() or the budget runs out; true if ready.
template <class Pred>
bool spin_until(Pred ready, std::chrono::nanoseconds budget) {
  if (ready()) return true;
  const auto until = std::chrono::steady_clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      cpu_relax();
      if (ready()) return true;
    }
    if (std::chrono::steady_clock::now() >= until) return false;
  }
}

}  // namespace parallelcode::detail
