#pragma once

#include <chrono>
#include <cstddef>

namespace parallelcode {

// The machine's hardware threads, at least 1.
unsigned default_workers() noexcept;

// How a pool is built. The first four fields keep this order so designated
// initializers written against them stay valid.
struct options {
  unsigned workers = default_workers();            // worker processes
  unsigned concurrency = 1;                        // jobs one worker runs at once
  std::chrono::microseconds tick{0};               // 0: dispatch at once; >0: at most one batch per tick
  std::size_t ring_bytes = std::size_t{1} << 20;   // per ring, rounded up to a power of two
  std::size_t max_payload = std::size_t{1} << 32;  // largest encoded data or result, in bytes
};

// Per-job settings.
struct job_options {
};

}  // namespace parallelcode
