#pragma once

// The daemon's counters for Prometheus, and their text exposition (format 0.0.4).
// Counted on the loop's thread and the pool's with relaxed atomics, read by whoever
// scrapes: nothing waits for anything.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <parallelcode/parallelcode.hpp>

#include "answers.hpp"

namespace parallelcode::control {

// Upper bounds of parallelcode_job_duration_seconds, from 100 µs to 60 s.
inline constexpr std::array<double, 18> duration_buckets{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                         0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                         1,      2.5,     5,      10,    30,     60};
// The kinds of job_error, as answers name them (job_error_type).
inline constexpr std::array<std::string_view, 5> failure_reasons{"job_failed", "worker_lost", "job_timeout",
                                                                  "payload_error", "job_cancelled"};

// One task's jobs from the control socket.
class task_counters {
 public:
  void submitted() noexcept { submitted_.fetch_add(1, std::memory_order_relaxed); }
  void completed(const job_context& ctx) noexcept;
  void failed(const job_error& e, const job_context& ctx) noexcept;
  // How many jobs ran so far.
  std::uint64_t runs() const noexcept { return runs_.load(std::memory_order_relaxed); }
  // The recent runs' mean: each run weighs an eighth, the ones before it the rest.
  std::chrono::nanoseconds recent_running() const noexcept {
    return std::chrono::nanoseconds(recent_.load(std::memory_order_relaxed));
  }

 private:
  friend class metrics;
  void ran(const job_context& ctx) noexcept;

  std::atomic<std::uint64_t> submitted_{0}, completed_{0};
  std::array<std::atomic<std::uint64_t>, failure_reasons.size()> failed_{};
  std::array<std::atomic<std::uint64_t>, duration_buckets.size() + 1> buckets_{};  // not cumulative; the last is +Inf
  std::atomic<std::uint64_t> nanoseconds_{0};
  std::atomic<std::uint64_t> runs_{0};
  std::atomic<std::int64_t> recent_{0};  // an estimate: racing runs may each miss the other's
};

class metrics {
 public:
  // One set of counters per task the daemon serves (known once the plugins are loaded).
  explicit metrics(const std::vector<task_info>& tasks);
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  // Stays valid as long as this; a task not served counts where nothing shows it.
  task_counters* of(std::string_view task) noexcept;

  // The exposition: the counters, and the pool and the remote queue as they are now.
  std::string text(const pool_stats& stats, const std::vector<worker_info>& workers,
                   const std::optional<queue_status>& queue) const;

 private:
  std::map<std::string, task_counters, std::less<>> tasks_;  // never changes after construction
  task_counters unlisted_;
};

// --metrics: "PORT" (on 127.0.0.1), "ADDR:PORT" or "[IPV6]:PORT"; ADDR a numeric address.
struct metrics_address {
  std::string host;
  unsigned port = 0;  // 0: any free port
};
// std::invalid_argument for anything else.
metrics_address parse_metrics_address(std::string_view text);

}  // namespace parallelcode::control
