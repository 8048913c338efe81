#pragma once

// A worker slot of the pool and the processes that serve it, each with its channel.

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include <parallelcode/info.hpp>

#include "frame.hpp"
#include "job_queue.hpp"
#include "region.hpp"
#include "ring.hpp"
#include "worker_process.hpp"

namespace parallelcode::detail {

// One worker process and the channel (its two rings) it talks through.
struct process {
  process(unsigned on, const region& shm, std::uint64_t frame_limit)
      : channel(on), jobs(shm.in(on)), results(shm.out(on)), reader(frame_limit) {}

  enum class phase {
    forking,   // asked of the fork server
    starting,  // forked, not yet ready
    ready,     // takes jobs (if it is its slot's current process)
  };

  unsigned channel;
  int slot = 0;                // the worker slot it serves
  phase state = phase::forking;
  worker_process proc;         // empty until the fork server reports it spawned
  clock::time_point spawned_at = clock::now();
  std::uint64_t done = 0;      // jobs it finished
  bool handed_job = false;     // past its start-up: a death now is no crash loop
  std::uint64_t max_jobs = 0;  // when it is recycled; 0: never
  std::size_t rss = 0;         // resident bytes, as last measured
  std::size_t rss_at_ready = 0;
  bool corrupt = false;        // wrote garbage: it was killed
  bool unwatched = false;      // its pidfd never arrived: it was killed, it takes no job
  bool over_limit = false;     // max_jobs or max_worker_rss reached: replaced once its replacement is ready
  bool ending = false;         // the pool ends it: it takes no job
  exit_reason reason = exit_reason::died;  // why, if the pool ends it

  // Results it wrote that the pool has yet to read (none count from one that wrote garbage).
  bool has_results() const noexcept { return proc.pid() && !corrupt && !results.empty(); }

  std::deque<pool_job> in_flight;  // handed to it, oldest first
  std::deque<pool_job> ahead;      // handed beyond its concurrency, not yet claimed: they run as it frees up
  bool quick = false;              // its last job was short: worth handing jobs ahead
  // The outbox: the last `outbox` jobs of in_flight, then ahead (the ring's order),
  // whose frames are not yet wholly in the ring.
  std::size_t outbox = 0;
  std::uint64_t outbox_sent = 0;  // bytes of the outbox's first frame written
  std::size_t written() const noexcept { return in_flight.size() + ahead.size() - outbox; }  // jobs before the outbox
  pool_job& outbox_front() noexcept {
    const std::size_t i = written();
    return i < in_flight.size() ? in_flight[i] : ahead[i - in_flight.size()];
  }
  const pool_job& outbox_front() const noexcept { return const_cast<process*>(this)->outbox_front(); }
  ring_writer jobs;
  ring_reader results;
  frame_reader reader;
};

// One worker slot of the pool: a stable id and place in pool order, served by
// one process at a time, which the slot outlives.
struct worker_slot {
  int id = 0;
  std::unique_ptr<process> current;               // takes jobs once ready
  std::unique_ptr<process> next;                  // replaces current once ready and current is over a limit
  std::vector<std::unique_ptr<process>> leaving;  // replaced or being killed: finishing, then gone
  std::uint64_t done = 0;
  unsigned respawns = 0;
  unsigned recycled = 0;
  unsigned young_deaths = 0;                      // in a row: dead before doing anything
  bool retiring = false;                          // resize() removed it: no job, no respawn, then gone
  std::optional<clock::time_point> respawn_at;    // a process for it waits until then
  bool backoff = false;                           // respawn_at is a crash-loop delay
};

}  // namespace parallelcode::detail
