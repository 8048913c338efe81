#pragma once

#include <chrono>
#include <cstdint>
#include <sys/types.h>

namespace parallelcode {

enum class worker_state {
  starting,  // forked or being forked; takes no job yet
  ready,     // takes jobs
};

// One worker as the pool sees it. id is the slot: it stays when the process is respawned.
struct worker_info {
  int id = -1;
  pid_t pid = 0;
  worker_state state = worker_state::starting;
  unsigned running = 0;     // jobs on it now
  std::uint64_t done = 0;   // jobs it finished, over all its processes
  unsigned respawns = 0;    // processes that died in this slot
};

// What a job's events know about it.
struct job_context {
  std::uint64_t id = 0;
  worker_info worker;                 // who ran it, as at its start
  std::chrono::nanoseconds queued{};  // submit to start
  std::chrono::nanoseconds running{}; // start to end
};

struct pool_stats {
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;         // ended with a result
  std::uint64_t failed = 0;            // ended with an error
  std::uint64_t dispatch_batches = 0;  // times the queue was drained into workers
  std::uint64_t respawns = 0;
  std::size_t queued = 0;              // waiting for a worker now
  pid_t fork_server = 0;
};

}  // namespace parallelcode
