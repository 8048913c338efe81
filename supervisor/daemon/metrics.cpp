#include "metrics.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <stdexcept>

namespace parallelcode::control {

namespace {

// A label value as the exposition format escapes it: backslash, double quote, newline.
std::string label(std::string_view value) {
  std::string out;
  for (char ch : value) {
    if (ch == '\\') out += "\\\\";
    else if (ch == '"') out += "\\\"";
    else if (ch == '\n') out += "\\n";
    else out += ch;
  }
  return out;
}

std::string number(double v) {
  char text[400];  // fixed notation of any double fits
  const auto end = std::to_chars(text, text + sizeof text, v, std::chars_format::fixed).ptr;
  return std::string(text, end);
}

class exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }
  // labels: already written as k="v",... (escaped), or empty.
  void sample(std::string_view name, const std::string& labels, std::uint64_t value) {
    sample(name, labels, std::to_string(value));
  }
  void sample(std::string_view name, const std::string& labels, const std::string& value) {
    out_.append(name);
    if (!labels.empty()) out_.append("{").append(labels).append("}");
    out_.append(" ").append(value).append("\n");
  }
  std::string text() && { return std::move(out_); }

 private:
  std::string out_;
};

std::uint64_t get(const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); }

}  // namespace

void task_counters::ran(const job_context& ctx) noexcept {
  const double seconds = std::chrono::duration<double>(ctx.running).count();
  std::size_t i = 0;
  while (i < duration_buckets.size() && seconds > duration_buckets[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  nanoseconds_.fetch_add(static_cast<std::uint64_t>(ctx.running.count()), std::memory_order_relaxed);
  runs_.fetch_add(1, std::memory_order_relaxed);
  const std::int64_t was = recent_.load(std::memory_order_relaxed);
  recent_.store(was + (ctx.running.count() - was) / 8, std::memory_order_relaxed);
}

void task_counters::completed(const job_context& ctx) noexcept {
  completed_.fetch_add(1, std::memory_order_relaxed);
  ran(ctx);
}

void task_counters::failed(const job_error& e, const job_context& ctx) noexcept {
  const std::string_view type = job_error_type(e);
  for (std::size_t i = 0; i < failure_reasons.size(); ++i)
    if (failure_reasons[i] == type) failed_[i].fetch_add(1, std::memory_order_relaxed);
  if (ctx.attempt > 0) ran(ctx);  // a job that never started has no duration
}

metrics::metrics(const std::vector<task_info>& tasks) {
  for (const auto& t : tasks) tasks_.try_emplace(t.name);
}

task_counters* metrics::of(std::string_view task) noexcept {
  const auto it = tasks_.find(task);
  return it == tasks_.end() ? &unlisted_ : &it->second;
}

std::string metrics::text(const pool_stats& stats, const std::vector<worker_info>& workers,
                          const std::optional<queue_status>& queue) const {
  exposition out;
  auto per_task = [&](std::string_view name, auto value) {
    for (const auto& [task, c] : tasks_) out.sample(name, "task=\"" + label(task) + "\"", value(c));
  };
  out.family("parallelcode_jobs_submitted_total", "counter", "Jobs submitted on the control socket, by task.");
  per_task("parallelcode_jobs_submitted_total", [](const task_counters& c) { return get(c.submitted_); });
  out.family("parallelcode_jobs_completed_total", "counter", "Jobs from the control socket that ended with a result, by task.");
  per_task("parallelcode_jobs_completed_total", [](const task_counters& c) { return get(c.completed_); });
  out.family("parallelcode_jobs_failed_total", "counter", "Jobs from the control socket that ended with an error, by task and error type.");
  for (const auto& [task, c] : tasks_)
    for (std::size_t i = 0; i < failure_reasons.size(); ++i)
      out.sample("parallelcode_jobs_failed_total",
                 "task=\"" + label(task) + "\",reason=\"" + std::string(failure_reasons[i]) + "\"", get(c.failed_[i]));

  out.family("parallelcode_job_duration_seconds", "histogram", "How long jobs from the control socket ran (their last run), by task.");
  for (const auto& [task, c] : tasks_) {
    const std::string t = "task=\"" + label(task) + "\"";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < duration_buckets.size(); ++i) {
      cumulative += get(c.buckets_[i]);
      out.sample("parallelcode_job_duration_seconds_bucket", t + ",le=\"" + number(duration_buckets[i]) + "\"", cumulative);
    }
    cumulative += get(c.buckets_.back());
    out.sample("parallelcode_job_duration_seconds_bucket", t + ",le=\"+Inf\"", cumulative);
    out.sample("parallelcode_job_duration_seconds_sum", t, number(static_cast<double>(get(c.nanoseconds_)) / 1e9));
    out.sample("parallelcode_job_duration_seconds_count", t, cumulative);
  }

  out.family("parallelcode_queue_length", "gauge", "Jobs waiting in the pool for a free worker.");
  out.sample("parallelcode_queue_length", "", std::uint64_t{stats.queued});
  std::uint64_t idle = 0, busy = 0, starting = 0, backoff = 0;
  for (const auto& w : workers) {
    if (w.state == worker_state::ready) ++(w.running ? busy : idle);
    else if (w.state == worker_state::backoff) ++backoff;
    else ++starting;
  }
  out.family("parallelcode_workers", "gauge", "Worker slots by state: idle, busy (running jobs), starting, backoff (crash loop).");
  out.sample("parallelcode_workers", "state=\"idle\"", idle);
  out.sample("parallelcode_workers", "state=\"busy\"", busy);
  out.sample("parallelcode_workers", "state=\"starting\"", starting);
  out.sample("parallelcode_workers", "state=\"backoff\"", backoff);
  out.family("parallelcode_worker_respawns_total", "counter", "Worker processes that died and were replaced.");
  out.sample("parallelcode_worker_respawns_total", "", stats.respawns);
  out.family("parallelcode_worker_recycles_total", "counter", "Worker processes replaced over --max-jobs-per-worker or --max-worker-rss.");
  out.sample("parallelcode_worker_recycles_total", "", stats.recycled);
  out.family("parallelcode_fork_server_restarts_total", "counter", "Times the fork server died and was started again.");
  out.sample("parallelcode_fork_server_restarts_total", "", stats.fork_server_restarts);
  out.family("parallelcode_pool_jobs_retried_total", "counter", "Jobs run again after their worker died (--retries).");
  out.sample("parallelcode_pool_jobs_retried_total", "", stats.retried);

  if (queue) {
    const std::string q = "queue=\"" + label(queue->queue) + "\"";
    out.family("parallelcode_remote_connected", "gauge", "1 while the daemon is connected to the remote queue's Redis.");
    out.sample("parallelcode_remote_connected", q, std::uint64_t{queue->connected});
    out.family("parallelcode_remote_jobs_held", "gauge", "Remote queue jobs this daemon holds (running or taken ahead).");
    out.sample("parallelcode_remote_jobs_held", q, std::uint64_t{queue->held});
    out.family("parallelcode_remote_jobs_completed_total", "counter", "Remote queue jobs this daemon answered.");
    out.sample("parallelcode_remote_jobs_completed_total", q, queue->completed);
    out.family("parallelcode_remote_jobs_reclaimed_total", "counter", "Remote queue jobs taken over from a daemon that stopped renewing them.");
    out.sample("parallelcode_remote_jobs_reclaimed_total", q, queue->reclaims);
    out.family("parallelcode_remote_jobs_dead_lettered_total", "counter", "Remote queue jobs moved to the dead-letter stream.");
    out.sample("parallelcode_remote_jobs_dead_lettered_total", q, queue->dead_lettered);
    out.family("parallelcode_remote_completions_discarded_total", "counter", "Remote queue results dropped: the lease had gone to another daemon.");
    out.sample("parallelcode_remote_completions_discarded_total", q, queue->discarded);
  }
  return std::move(out).text();
}

metrics_address parse_metrics_address(std::string_view text) {
  const auto bad = [&](const char* why) {
    return std::invalid_argument("--metrics " + std::string(text) + ": " + why + " (PORT, ADDR:PORT or [IPV6]:PORT)");
  };
  metrics_address a{"127.0.0.1", 0};
  std::string_view port = text;
  if (const auto colon = text.rfind(':'); colon != std::string_view::npos) {
    std::string_view host = text.substr(0, colon);
    port = text.substr(colon + 1);
    const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    if (bracketed) host = host.substr(1, host.size() - 2);
    a.host = std::string(host);
    unsigned char ignored[16];
    if (::inet_pton(bracketed ? AF_INET6 : AF_INET, a.host.c_str(), ignored) != 1) throw bad("not a numeric address");
  }
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), a.port);
  if (port.empty() || error != std::errc{} || end != port.data() + port.size() || a.port > 65535)
    throw bad("the port must be a number from 0 to 65535");
  return a;
}

}  // namespace parallelcode::control
