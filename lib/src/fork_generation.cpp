#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>

#include "worker_entry.hpp"

namespace parallelcode::detail {

namespace {

// Forks are seen by what the kernel does in every child, however it was forked:
// a pthread_atfork handler misses syscall(SYS_fork) and clone(), and a child
// that takes itself for the original writes into the original's rings.
//
// Mainly a page the kernel zeroes in each forked child (MADV_WIPEONFORK, Linux
// 4.14): one load per look, where getpid() would be a system call on every submit.
// It holds the generation + 1; 0 there means a fork happened since it was set.
std::atomic<std::atomic<std::uint32_t>*> wiped{nullptr};
// The generation this process had when it last set the page (after a fork: its parent's).
std::atomic<std::uint32_t> last_generation{0};
// Where that page cannot be had: pid << 32 | generation, against getpid() at each look.
std::atomic<bool> by_pid{false};
std::atomic<std::uint64_t> pid_stamp{0};

std::uint64_t stamp(pid_t pid, std::uint32_t generation) {
  return std::uint64_t{static_cast<std::uint32_t>(pid)} << 32 | generation;
}

unsigned generation_by_page(std::atomic<std::uint32_t>& word) noexcept {
  std::uint32_t seen = word.load(std::memory_order_acquire);
  if (seen != 0) return seen - 1;
  // A fork since: the first thread to look moves the generation on, the others read its value.
  const std::uint32_t next = last_generation.load(std::memory_order_relaxed) + 1;
  if (word.compare_exchange_strong(seen, next + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
    last_generation.store(next, std::memory_order_relaxed);
    return next;
  }
  return seen - 1;
}

unsigned generation_by_pid() noexcept {
  const pid_t me = ::getpid();
  std::uint64_t seen = pid_stamp.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<pid_t>(seen >> 32) == me) return static_cast<std::uint32_t>(seen);
    if (pid_stamp.compare_exchange_weak(seen, stamp(me, static_cast<std::uint32_t>(seen) + 1),
                                        std::memory_order_acq_rel, std::memory_order_acquire))
      return static_cast<std::uint32_t>(seen) + 1;
  }
}

}  // namespace

void watch_forks() noexcept {
  static std::once_flag armed;
  std::call_once(armed, [] {
    const long page = ::sysconf(_SC_PAGESIZE);
    void* p = ::mmap(nullptr, static_cast<std::size_t>(page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED && ::madvise(p, static_cast<std::size_t>(page), MADV_WIPEONFORK) == 0) {
      auto* word = new (p) std::atomic<std::uint32_t>(last_generation.load(std::memory_order_relaxed) + 1);
      wiped.store(word, std::memory_order_release);  // kept for the life of the process
      return;
    }
    if (p != MAP_FAILED) ::munmap(p, static_cast<std::size_t>(page));
    pid_stamp.store(stamp(::getpid(), last_generation.load(std::memory_order_relaxed)), std::memory_order_relaxed);
    by_pid.store(true, std::memory_order_release);
  });
}

unsigned fork_generation() noexcept {
  if (auto* word = wiped.load(std::memory_order_acquire)) return generation_by_page(*word);
  if (by_pid.load(std::memory_order_acquire)) return generation_by_pid();
  return last_generation.load(std::memory_order_relaxed);  // before watch_forks(): no pool was started here
}

}  // namespace parallelcode::detail
