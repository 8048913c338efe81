#pragma once

// The daemon's end of a remote queue: takes jobs from the stream into the local
// pool, renews their leases while they run, completes them with the fenced script,
// and sweeps for jobs whose daemon stopped renewing. Two connections: one that
// blocks on XREADGROUP, one for everything else.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <parallelcode/pool.hpp>

#include "answers.hpp"
#include "keys.hpp"
#include "redis.hpp"

namespace parallelcode::remote {

// How much an event in the log matters: a warning is a job or a connection in trouble.
enum class severity { info, warning };

struct consumer_settings {
  std::string url;
  std::string password;  // empty: the URL's, if any
  std::string queue = "default";
  std::chrono::milliseconds lease{30'000};
  unsigned max_deliveries = 5;
  std::size_t slots = 1;     // jobs the pool runs at once (workers x concurrency)
  std::size_t prefetch = 1;  // held beyond those, waiting for a free worker
  std::chrono::seconds reply_ttl{3600};
  std::chrono::seconds idempotency_ttl{86400};
  std::function<void(severity, const std::string&)> log;  // one line per event
  std::function<void()> on_idle;                // when the last held job is answered
};

class consumer {
 public:
  // Starts taking jobs. std::invalid_argument for a bad URL or name; credentials_refused
  // if Redis refuses us (an unreachable Redis is only logged: we keep trying).
  consumer(pool& workers, consumer_settings settings);
  // Stops at once: jobs still held go to other daemons when their leases end.
  ~consumer();
  consumer(const consumer&) = delete;
  consumer& operator=(const consumer&) = delete;

  // Takes no new job; the held ones run on and are answered.
  void stop_taking();
  std::size_t held() const;
  control::queue_status status() const;

 private:
  struct held_job {
    std::string reply;
    std::string idem;
    bool lost = false;  // renewal found another owner: our answer will be discarded
  };
  struct completion {
    std::string id;
    std::string answer;
    std::string burial;  // non-empty: to the dead-letter stream with this error
  };

  void read_loop();
  void take_lost_deliveries(connection& c);
  void keep_loop();
  // An entry delivered to us: into the pool, or answered at once if it cannot run.
  void take(const redisReply& entry, long long deliveries, const std::string& previous_owner);
  void finish(std::string id, std::string answer, std::string burial = {});
  // A job the pool gave up on without running it (stopping now): left to its lease.
  void release(const std::string& id);
  struct batch {
    std::vector<completion> done;
    std::vector<std::string> args;  // complete.lua's
  };
  // complete.lua's arguments before its five per job.
  std::vector<std::string> completion_args() const;
  batch take_batch();
  void put_back(batch& b);
  // Counts and forgets what the completion script did with a batch.
  void settle(const batch& b, const reply& r);
  void flush(connection& c);
  void renew(connection& c);
  void sweep(connection& c);
  void set_connected(bool reader, bool up, const std::string& why = {});
  void wait_before_retry(std::chrono::milliseconds& backoff);

  pool& pool_;
  consumer_settings settings_;
  redis_address address_;
  queue_keys keys_;
  std::string name_ = host_and_pid();

  mutable std::mutex mutex_;
  std::condition_variable changed_;  // held jobs, completions, stop
  std::map<std::string, held_job> held_;
  // Of held_, those still to finish here; at most slots + prefetch. Answers on their way
  // to Redis do not count: the next read need not wait for the last completion.
  std::size_t unfinished_ = 0;
  std::vector<completion> completions_;
  bool taking_ = true;
  bool quit_ = false;
  bool reader_up_ = false, keeper_up_ = false;
  bool told_down_ = false;  // "lost Redis" logged once an outage

  std::atomic<std::int64_t> clock_offset_ms_{0};  // Redis's clock minus ours
  std::atomic<std::uint64_t> completed_{0}, renewals_{0}, reclaims_{0}, dead_lettered_{0}, discarded_{0};

  std::thread reader_;
  std::thread keeper_;
};

}  // namespace parallelcode::remote
