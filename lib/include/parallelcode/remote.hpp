#pragma once

// One queue in Redis that many daemons on many machines consume: a stream and a
// consumer group (see the README's "Many machines"). Jobs are named tasks with JSON
// arguments, as on a daemon's socket. Link parallelcode-remote (its own pkg-config
// file); libparallelcode itself never needs hiredis.

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <parallelcode/errors.hpp>
#include <parallelcode/export.hpp>

namespace parallelcode {

// Redis cannot be reached, refuses the credentials, or answers what a queue cannot be.
class PARALLELCODE_API queue_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The queue holds remote_options::max_length jobs already: submit again later.
class PARALLELCODE_API queue_busy : public queue_error {
 public:
  using queue_error::queue_error;
};

// No daemon took the job before its deadline: it never ran.
class PARALLELCODE_API deadline_exceeded : public job_error {
 public:
  using job_error::job_error;
};

// The job was delivered max-deliveries times and its daemon died under it each time:
// it waits in the dead-letter stream (remote_queue::retry puts it back).
class PARALLELCODE_API dead_lettered : public job_error {
 public:
  using job_error::job_error;
};

struct remote_options {
  std::string name = "default";  // every key of the queue is pc:{name}:…
  // Empty: PARALLELCODE_QUEUE_PASSWORD if set, else the URL's, else none.
  std::string password{};
  std::chrono::milliseconds connect_timeout{2000};
  // A call whose connection breaks (Redis restarting, say) tries again for this long
  // before queue_error. A submit cut off after Redis took it is sent twice: two jobs,
  // unless it has an idempotency key. The constructor does not wait: it fails at once.
  std::chrono::milliseconds reconnect_timeout{30000};
  std::size_t max_length = 1'000'000;    // jobs waiting or running; more are refused (queue_busy)
  std::chrono::seconds reply_ttl{3600};  // how long an answer waits for its submitter
  std::chrono::seconds idempotency_ttl{86400};
};

struct remote_job_options {
  std::chrono::milliseconds timeout{0};   // as job_options::timeout, on the daemon that runs it
  unsigned retries = 0;                   // as job_options::retries, on the daemon that runs it
  std::chrono::milliseconds deadline{0};  // 0: none; else a job not started by then is deadline_exceeded
  // Non-empty: a second submit with the same key (within idempotency_ttl) gets the
  // first one's job and answer instead of a new job. It dedupes submits, not runs.
  std::string idempotency_key{};
};

struct remote_call {
  std::string task{};
  std::string args = "null";  // JSON text
  remote_job_options options{};
};

class remote_queue;

// A job in the queue and its one answer. Copyable: copies share the answer.
class PARALLELCODE_API remote_job {
 public:
  remote_job() = default;
  const std::string& id() const;  // the job's stream entry id

  // The result as JSON text; blocks until the answer comes. Throws what the local
  // pool throws (job_failed, worker_lost, job_timeout, payload_error, job_cancelled),
  // deadline_exceeded, dead_lettered, or queue_error if the queue was closed first.
  std::string result() const;
  // The answer as a daemon's control socket words it ({"ok":true,"consumer":"host:pid",
  // "worker_pid":…,"result":…} or {"ok":false,"error":{"type":…,"message":…}}); blocks like result().
  std::string answer() const;
  // True once the answer is here.
  bool wait_for(std::chrono::milliseconds timeout) const;

  struct state;

 private:
  friend class remote_queue;
  explicit remote_job(std::shared_ptr<state> s) : state_(std::move(s)) {}
  std::shared_ptr<state> state_;
};

struct queue_consumer {
  std::string name{};                // host:pid of its daemon
  std::size_t pending = 0;           // jobs it holds
  std::chrono::milliseconds idle{};  // since it last read or renewed
};

struct queue_stats {
  std::size_t length = 0;   // jobs waiting or running
  std::size_t waiting = 0;  // not yet taken by a daemon
  std::size_t pending = 0;  // taken, not yet answered
  std::size_t dead = 0;     // in the dead-letter stream
  std::vector<queue_consumer> consumers{};
};

struct dead_letter {
  std::string id{};     // in the dead-letter stream: what retry takes
  std::string job{};    // the job's id when it died
  std::string task{};
  std::string args{};
  std::string error{};  // why it was buried
  unsigned deliveries = 0;
};

// A connection to one queue. Thread-safe; answers come on a thread of its own.
// Throws queue_error from the constructor if Redis cannot be reached or refuses.
class PARALLELCODE_API remote_queue {
 public:
  // url: redis://[user[:password]@]host[:port][/db] or unix:///path/redis.sock[?db=N]
  explicit remote_queue(std::string_view url, remote_options options = {});
  ~remote_queue();
  remote_queue(const remote_queue&) = delete;
  remote_queue& operator=(const remote_queue&) = delete;

  // Throws queue_busy when the queue is full, queue_error when Redis fails.
  remote_job submit(std::string_view task, std::string_view args = "null", remote_job_options options = {});
  // All in one round trip: a job for each call, in order, or none where the queue was full.
  std::vector<std::optional<remote_job>> submit_all(std::span<const remote_call> calls);

  queue_stats stats();
  std::vector<dead_letter> dead(std::size_t count = 100);
  // Puts a dead letter back on the queue; returns the job, whose answer comes here.
  // std::invalid_argument if there is no such dead letter.
  remote_job retry(std::string_view dead_id);
  // Drops every job no daemon has taken yet (their submitters get job_cancelled) and
  // every dead letter; returns how many of each.
  std::pair<std::size_t, std::size_t> purge();

  // The URL without its password, for logs.
  const std::string& where() const noexcept;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace parallelcode
