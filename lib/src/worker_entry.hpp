#pragma once

// Where the fork server (supervisor side) hands a new child to the worker loop
// (worker side): the two meet only here.

#include <cstddef>
#include <cstdint>
#include <sys/types.h>

#include "region.hpp"

namespace parallelcode::detail {

struct worker_start {
  const region* shm;
  unsigned channel;
  int id;
  unsigned concurrency;
  std::uint64_t max_payload;
  int doorbell;            // eventfd the supervisor sleeps on
  pid_t fork_server;       // the parent; the worker leaves when it is gone
  void (*init)(int id);    // options::worker_init
  std::size_t max_rss;     // options::max_worker_rss: report RSS with each result
};

// Runs in the freshly forked worker; never returns.
[[noreturn]] void run_worker(const worker_start& start);

// Differs from its value in every process this one was forked from (however it was
// forked), once watch_forks() ran. A pool remembers it at start(): a forked copy of a
// pool (in a worker, or in a child the host forked) must not drive the processes or
// the memory of the original.
void watch_forks() noexcept;
unsigned fork_generation() noexcept;

}  // namespace parallelcode::detail
