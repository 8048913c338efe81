#include <pthread.h>

#include <atomic>
#include <mutex>

#include "worker_entry.hpp"

namespace parallelcode::detail {

namespace {

std::atomic<unsigned> generation{0};

void on_fork_child() { generation.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

void watch_forks() noexcept {
  static std::once_flag registered;
  std::call_once(registered, [] { ::pthread_atfork(nullptr, nullptr, on_fork_child); });
}

unsigned fork_generation() noexcept { return generation.load(std::memory_order_relaxed); }

}  // namespace parallelcode::detail
