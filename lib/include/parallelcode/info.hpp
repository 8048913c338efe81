#pragma once

#include <parallelcode/export.hpp>  // first: its C++20 check

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <sys/types.h>

namespace parallelcode {

enum class worker_state {
  starting,  // its process is being forked or starting up
  ready,     // takes jobs
  backoff,   // its processes keep dying at start-up: the next one waits (crash loop)
};

// One worker as the pool sees it. id is the slot: it stays when the process is replaced.
struct worker_info {
  int id = -1;
  pid_t pid = 0;            // 0 while it has no process
  worker_state state = worker_state::starting;
  unsigned running = 0;     // jobs on it now
  std::uint64_t done = 0;   // jobs it finished, over all its processes
  unsigned respawns = 0;    // processes that died in this slot and were replaced
  unsigned recycled = 0;    // processes replaced for max_jobs_per_worker or max_worker_rss
  std::size_t rss = 0;      // bytes, as last sampled
  std::chrono::nanoseconds uptime{};  // of its current process
};

// What a job's events know about it.
struct job_context {
  std::uint64_t id = 0;
  worker_info worker;                 // who ran it, as at its (last) start
  std::chrono::nanoseconds queued{};  // submit to (last) start
  std::chrono::nanoseconds running{}; // (last) start to end
  unsigned attempt = 0;               // 1 on the first run, 2 on the first retry, ...
};

// Why a worker process ended.
enum class exit_reason {
  died,       // on its own: crashed, exited, or killed from outside
  timed_out,  // killed by the pool: a job on it ran past its timeout
  recycled,   // retired by the pool: max_jobs_per_worker or max_worker_rss
  stopped,    // the pool was freed or its fork server died
};

struct worker_exit {
  worker_info worker;        // the slot, after the exit
  pid_t pid = 0;
  int signal = 0;            // 0 when it exited
  int exit_status = -1;      // -1 when a signal killed it
  exit_reason reason = exit_reason::died;
  std::chrono::nanoseconds uptime{};
};

struct pool_stats {
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;         // ended with a result
  std::uint64_t failed = 0;            // ended with an error
  std::uint64_t retried = 0;           // runs again after their worker died
  std::uint64_t dispatch_batches = 0;  // times the queue was drained into workers
  std::uint64_t handed_ahead = 0;      // small jobs put in a busy worker's ring, to run when it frees up
  std::uint64_t taken_back = 0;        // of those, returned to the queue: the worker stayed busy, or died
  std::uint64_t respawns = 0;          // worker processes that died and were replaced
  std::uint64_t recycled = 0;          // worker processes replaced over a limit
  std::uint64_t forks = 0;             // worker processes forked, all reasons
  std::uint64_t fork_server_restarts = 0;
  std::size_t queued = 0;              // waiting for a worker now
  pid_t fork_server = 0;
};

}  // namespace parallelcode
