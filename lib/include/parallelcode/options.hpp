#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

#include <parallelcode/export.hpp>

namespace parallelcode {

// The machine's hardware threads, at least 1.
PARALLELCODE_API unsigned default_workers() noexcept;

// How a pool is built. The first four fields keep this order so designated
// initializers written against them stay valid.
struct options {
  unsigned workers = default_workers();            // worker processes
  unsigned concurrency = 1;                        // jobs one worker runs at once
  std::chrono::microseconds tick{0};               // 0: dispatch at once; >0: at most one batch per tick
  std::size_t ring_bytes = std::size_t{1} << 20;   // per ring, rounded up to a power of two
  std::size_t max_payload = std::size_t{1} << 32;  // largest encoded data or result, in bytes
  unsigned max_workers = 0;                        // most workers resize() may reach; 0: workers

  // Fault tolerance. 0 turns each off.
  std::chrono::milliseconds job_timeout{0};        // from a job's start; its worker is killed
  unsigned max_jobs_per_worker = 0;                // then the worker is replaced (plus up to 10% jitter)
  std::size_t max_worker_rss = 0;                  // bytes; over it the worker is replaced
  std::chrono::milliseconds kill_grace{500};       // SIGTERM, then SIGKILL this much later

  // Runs in every new worker before it takes jobs (not in the host). A worker
  // whose init throws or crashes counts as crashed at start-up.
  void (*worker_init)(int worker_id) = nullptr;
};

// Per-job settings.
struct job_options {
  std::optional<std::chrono::milliseconds> timeout{};  // overrides options::job_timeout; 0 = none
  unsigned retries = 0;  // times the job is run again if its worker dies under it
};

// pool::map's settings. Items travel in chunks, one job each: a chunk's timeout and
// retries are job's, so a chunk whose worker dies is failed, or run again, whole.
struct map_options {
  std::size_t chunk_size = 0;  // items a chunk; 0: chosen from a first chunk's measured cost per item
  job_options chunk{};
};

}  // namespace parallelcode
