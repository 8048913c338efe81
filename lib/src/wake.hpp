#pragma once

// Sleeping and waking across processes. A sleeper publishes "I sleep" in a word of
// shared memory, re-checks its condition, then sleeps on that very word; a waker
// that changed the condition exchanges the word to 0 and wakes it. Sleeping on a
// separate sequence word loses wakeups.

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>

namespace parallelcode::detail {

static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// Sleeps while word == expected, at most timeout. Shared futex: works across fork.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept;
void futex_wake(std::atomic<std::uint32_t>& word) noexcept;

// True if the sleeper behind flag said it sleeps: the caller, and no other waker, must wake it.
inline bool take_sleeper(std::atomic<std::uint32_t>& flag) noexcept {
  return flag.load(std::memory_order_seq_cst) != 0 && flag.exchange(0, std::memory_order_seq_cst) != 0;
}

// Wakes whoever sleeps on flag; true if someone did.
inline bool wake_futex_sleeper(std::atomic<std::uint32_t>& flag) noexcept {
  if (!take_sleeper(flag)) return false;
  futex_wake(flag);
  return true;
}

// Rings an eventfd if the sleeper behind flag is asleep in epoll.
void wake_eventfd_sleeper(std::atomic<std::uint32_t>& flag, int eventfd) noexcept;

// What a spinning thread tells the core: a pause on x86, a yield hint on ARM, else nothing.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#endif
}

// True if this process may run on one CPU only: then whatever it waits for needs this
// very core. Asked once; a constant-initialized atomic, so no guard lock on the way.
inline bool one_cpu() noexcept {
  static std::atomic<int> known{0};  // 0: not asked yet, 1: one CPU, 2: more
  int k = known.load(std::memory_order_relaxed);
  if (k == 0) {
    cpu_set_t set;
    k = ::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) == 1 ? 1 : 2;
    known.store(k, std::memory_order_relaxed);
  }
  return k == 1;
}

// Spins until ready() or the budget runs out; true if ready. It spins alone for
// the first microseconds (a peer spinning on another core answers in ~0.2 us), then
// yields between looks: on a machine with fewer cores than busy threads, the thread
// it waits for may need this very core. On one CPU it yields from the start.
template <class Pred>
bool spin_until(Pred ready, std::chrono::nanoseconds budget) {
  if (ready()) return true;
  constexpr std::chrono::microseconds spin_alone{5};
  const auto yield_after = one_cpu() ? std::chrono::nanoseconds::zero() : std::chrono::nanoseconds(spin_alone);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      cpu_relax();
      if (ready()) return true;
    }
    const auto spent = std::chrono::steady_clock::now() - start;
    if (spent >= budget) return false;
    if (spent >= yield_after) ::sched_yield();
  }
}

// A mutex that spins a little before it sleeps: the pool's critical sections are
// shorter than a futex sleep and wakeup, which a plain mutex pays on every clash.
class adaptive_mutex {
 public:
  void lock() noexcept {
    if (try_lock()) return;
    for (int i = 0; i < spins; ++i) {
      cpu_relax();
      if (state_.load(std::memory_order_relaxed) == unlocked && try_lock()) return;
    }
    while (state_.exchange(contended, std::memory_order_acquire) != unlocked) state_.wait(contended);
  }
  bool try_lock() noexcept {
    std::uint32_t expected = unlocked;
    return state_.compare_exchange_strong(expected, locked, std::memory_order_acquire, std::memory_order_relaxed);
  }
  void unlock() noexcept {
    if (state_.exchange(unlocked, std::memory_order_release) == contended) state_.notify_one();
  }

 private:
  static constexpr int spins = 256;
  enum : std::uint32_t { unlocked, locked, contended };  // contended: someone may sleep on it
  std::atomic<std::uint32_t> state_{unlocked};
};

}  // namespace parallelcode::detail
