// The soak: the kill storm for minutes. Random SIGKILLs from outside the library
// while a mix of tiny, CPU-bound, large, throwing, timing-out and oversized jobs
// runs. Every job must end exactly once, with the right result or an error its
// kind allows; the pool must end with every worker alive and this process's
// memory must stay flat. The last line is "soak: ok" or "soak: FAILED: why".
//   soak [--seconds N | --minutes N] [--workers N] [--kill-every-ms N] [--in-flight N] [--seed N]

#include <parallelcode/parallelcode.hpp>

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "statm.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;
using clock_type = std::chrono::steady_clock;

namespace {

// --- what the workers run -----------------------------------------------------

struct cpu_work {
  std::uint64_t seed = 0;
  std::uint64_t iters = 0;
  template <class A>
  void serialize(A& a) {
    a(seed, iters);
  }
};

// seed + sum of i*i for i < iters, the slow way; the empty asm keeps the compiler
// from folding the loop into the closed form the host checks it against.
std::uint64_t spin(const cpu_work& w) {
  std::uint64_t acc = w.seed;
  for (std::uint64_t i = 0; i < w.iters; ++i) {
    acc += i * i;
    asm volatile("" : "+r"(acc));
  }
  return acc;
}

// The same, in closed form: (n-1)n(2n-1)/6, divided exactly before the
// multiplications wrap round 2^64 as the loop's additions do.
std::uint64_t spin_expected(const cpu_work& w) {
  if (w.iters == 0) return w.seed;
  std::uint64_t f[3] = {w.iters - 1, w.iters, 2 * w.iters - 1};
  for (auto& x : f)
    if (x % 2 == 0) {
      x /= 2;
      break;
    }
  for (auto& x : f)
    if (x % 3 == 0) {
      x /= 3;
      break;
    }
  return w.seed + f[0] * f[1] * f[2];
}

std::vector<std::uint8_t> plus_one(std::vector<std::uint8_t> v) {
  for (auto& b : v) b = static_cast<std::uint8_t>(b + 1);
  return v;
}

int throws_out_of_range(int x) { throw std::out_of_range("soak " + std::to_string(x)); }

std::string makes_text(int bytes) { return std::string(static_cast<std::size_t>(bytes), 'x'); }

std::size_t measures(const std::string& s) { return s.size(); }

// 64 bits at a time: it runs on the pool's thread (on_done), which must stay quick.
std::uint64_t checksum(const std::uint8_t* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ n;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  for (; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

// --- the mix ------------------------------------------------------------------

enum kind : int { tiny, cpu, large, throwing, timing_out, oversize, kinds };
constexpr const char* kind_names[kinds] = {"tiny", "cpu", "large", "throwing", "timeout", "oversize"};
// Out of 1000 draws; a draw whose kind is at its in-flight cap becomes tiny, so the
// slow kinds cannot crowd out the rest (a timing-out job holds a worker for its timeout).
constexpr int weight[kinds] = {560, 250, 40, 100, 30, 20};
constexpr int cap[kinds] = {1 << 30, 256, 4, 1 << 30, 2, 1};

constexpr std::size_t max_payload = std::size_t{4} << 20;  // large jobs stay under it, oversize ones go over
constexpr auto job_timeout = 20ms;

enum outcome : int { done, failed, lost, timed_out, payload, cancelled, other, outcomes };
constexpr const char* outcome_names[outcomes] = {"completed",   "job_failed",    "worker_lost", "job_timeout",
                                                 "payload_error", "job_cancelled", "other"};
// What each kind may end with under the storm. Any kind may lose its worker.
constexpr bool allowed[kinds][outcomes] = {
    // done  failed lost  timeout payload cancelled other
    {true, false, true, false, false, false, false},   // tiny
    {true, false, true, false, false, false, false},   // cpu
    {true, false, true, false, false, false, false},   // large
    {false, true, true, false, false, false, false},   // throwing
    {false, false, true, true, false, false, false},   // timing out
    {false, false, true, false, true, false, false},   // oversize
};

struct record {
  kind k;
  std::uint64_t seq;
  std::uint64_t expect = 0;  // the result, or the checksum of a large one
  std::size_t bytes = 0;
  unsigned retries = 0;
  clock_type::time_point submitted_at = clock_type::now();
  std::atomic<int> ends{0};
};

struct tally {
  std::atomic<std::uint64_t> submitted[kinds]{};
  std::atomic<std::uint64_t> ended[kinds][outcomes]{};
  std::atomic<int> in_flight_of[kinds]{};
  std::atomic<std::uint64_t> ended_once{0};
  std::atomic<std::uint64_t> duplicated{0};
  std::atomic<std::uint64_t> wrong{0};
  std::atomic<std::uint64_t> unexpected{0};
  std::atomic<std::uint64_t> bad_context[3]{};  // job_contexts contradicting what happened: attempt, worker, queued
  std::atomic<std::int64_t> max_queued_ns{0};
  std::atomic<std::int64_t> max_queued_first_ns{0};  // of jobs on their first run: a retry's counts its earlier runs
  std::string slowest;                                 // that job, under m
  // The longest time no job ended, and when: a stalled pool shows here, not in one job's wait.
  std::atomic<std::int64_t> last_end_ns{0};
  std::atomic<std::int64_t> max_gap_ns{0};
  std::atomic<std::int64_t> max_gap_at_ns{0};
  std::array<std::atomic<std::uint64_t>, 64> queued_us_log2{};  // bucket b: < 2^b us
  std::atomic<std::uint64_t> kills{0};

  std::mutex m;
  std::vector<std::string> examples;  // the first few things that went wrong

  void note(std::string what) {
    std::lock_guard lock(m);
    if (examples.size() < 12) examples.push_back(std::move(what));
  }
};

std::uint64_t total_submitted(const tally& t) {
  std::uint64_t n = 0;
  for (const auto& s : t.submitted) n += s.load();
  return n;
}

// Free memory kept for reuse is not a leak: the library's cache of big payload
// buffers (up to 64 MiB while jobs flow) and malloc's free chunks.
void give_back_free_memory() {
  pc::detail::trim_buffer_cache();
#ifdef __GLIBC__
  ::malloc_trim(0);
#endif
}

std::size_t rss_bytes() { return pc::detail::resident_bytes_of(::getpid()); }

// The pool's thread ("pc-supervisor") as the kernel sees it: state, where it
// sleeps, and the system call it is in. What a stall report needs.
std::string pool_thread_state() {
  std::string out;
  for (const auto& task : test::threads_named("pc-supervisor")) {
    std::ifstream stat(task + "/stat"), wchan(task + "/wchan"), syscall(task + "/syscall");
    std::string line, where, call;
    std::getline(stat, line);
    std::getline(wchan, where);
    std::getline(syscall, call);
    const auto close = line.rfind(')');
    out += "thread " + task.substr(task.rfind('/') + 1) + " state " +
           (close != std::string::npos && close + 2 < line.size() ? line.substr(close + 2, 1) : "?") + ", wchan " +
           where + ", syscall " + call.substr(0, call.find(' '));
  }
  return out.empty() ? "no pc-supervisor thread" : out;
}

double mib(std::size_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

struct settings {
  std::chrono::seconds duration{120};
  unsigned workers = 4;
  std::chrono::milliseconds kill_every{5};
  std::ptrdiff_t in_flight = 2000;
  std::uint64_t seed = 1;
};

[[noreturn]] void usage(const char* why, int status = 2) {
  std::fprintf(status ? stderr : stdout,
               "soak: %s\nusage: soak [--seconds N | --minutes N] [--workers N] [--kill-every-ms N (0: no kills)]"
               " [--in-flight N] [--seed N]\n",
               why);
  std::exit(status);
}

settings parse(int argc, char** argv) {
  settings s;
  auto number = [&](int& i, long long lo, long long hi) {
    if (i + 1 >= argc) usage((std::string(argv[i]) + " needs a number").c_str());
    char* end = nullptr;
    const long long v = std::strtoll(argv[++i], &end, 10);
    if (!*argv[i] || *end || v < lo || v > hi)
      usage((std::string(argv[i - 1]) + " must be " + std::to_string(lo) + " to " + std::to_string(hi)).c_str());
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seconds") s.duration = std::chrono::seconds(number(i, 1, 7 * 24 * 3600));
    else if (a == "--minutes") s.duration = std::chrono::minutes(number(i, 1, 7 * 24 * 60));
    else if (a == "--workers") s.workers = static_cast<unsigned>(number(i, 1, 256));
    else if (a == "--kill-every-ms") s.kill_every = std::chrono::milliseconds(number(i, 0, 60'000));
    else if (a == "--in-flight") s.in_flight = number(i, 1, 1'000'000);
    else if (a == "--seed") s.seed = static_cast<std::uint64_t>(number(i, 0, 1LL << 62));
    else if (a == "--help" || a == "-h") usage("the kill storm with a mix of jobs, for a while", 0);
    else usage(("unknown option " + a).c_str());
  }
  return s;
}

// One soak: the pool, the storm on it and the tally of every job's end. main()
// runs its steps in order; each reads what the ones before it left.
class soak_run {
 public:
  explicit soak_run(const settings& cfg) : cfg_(cfg), room_(cfg.in_flight), rng_(cfg.seed) {}

  // The pool, and beside it the watchdog that reports stalls and the killer.
  void start_pool_and_storm() {
    pool_.start({.workers = cfg_.workers, .max_payload = max_payload, .kill_grace = 100ms});
    watchdog_ = std::thread([this] { watch_for_stalls(); });
    killer_ = std::thread([this] { kill_workers(); });
  }

  // Submits jobs until the run's time is up, sampling RSS and printing progress.
  void submit_until_time_is_up() {
    const auto until = t0_ + cfg_.duration;
    auto next_sample = t0_;
    auto next_report = t0_ + report_every();
    std::printf("soak: %lld s, %u workers, a SIGKILL every %lld ms, at most %td jobs in flight, seed %" PRIu64 "\n",
                static_cast<long long>(cfg_.duration.count()), cfg_.workers,
                static_cast<long long>(cfg_.kill_every.count()), cfg_.in_flight, cfg_.seed);
    std::fflush(stdout);
    for (auto now = t0_; now < until; now = clock_type::now()) {
      if (now >= next_sample) {
        rss_peak_ = std::max(rss_peak_, rss_bytes());
        next_sample = now + 100ms;
      }
      if (rss_start_ == 0 && now - t0_ >= warm_up()) {  // measured as at the end: trimmed
        give_back_free_memory();
        rss_start_ = rss_bytes();
      }
      if (now >= next_report) {
        std::printf("  %4lld s: %" PRIu64 " jobs ended, %" PRIu64 " kills, %" PRIu64 " respawns, RSS %.1f MiB\n",
                    static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(now - t0_).count()),
                    t_.ended_once.load(), t_.kills.load(), pool_.stats().respawns, mib(rss_bytes()));
        std::fflush(stdout);
        next_report += report_every();
      }
      // A job that never ends keeps its room: with all of it gone, submitting stalls.
      if (!room_.try_acquire_for(30s)) {
        stalled_ = "no job ended for 30 s with " + std::to_string(cfg_.in_flight) + " in flight";
        break;
      }
      submit_one();
    }
  }

  // Every job submitted must end, the storm still raging; the rest are lost. Then the storm stops.
  void wait_for_every_job_then_stop_the_storm() {
    submitted_ = total_submitted(t_);
    all_ended_ = test::eventually([&] { return t_.ended_once.load() == submitted_; }, 60s);
    stop_killing_ = true;
    killer_.join();
    watchdog_.join();
    elapsed_ = clock_type::now() - t0_;
  }

  // The storm's last kill may not be reported yet: wait for N ready workers that are all alive.
  void wait_for_the_pool_to_heal() {
    healed_ = test::eventually([&] {
      const auto ws = pool_.workers();
      return test::all_ready(pool_, cfg_.workers) &&
             std::all_of(ws.begin(), ws.end(), [](const auto& w) { return test::process_alive(w.pid); });
    }, 10s);
    for (const auto& w : pool_.workers()) live_ += w.state == pc::worker_state::ready && test::process_alive(w.pid);
  }

  // Every job has ended: what is left is live, leaked or free memory malloc keeps.
  // Give the free memory back, so a peak of large payloads held in the heap is not
  // taken for a leak (leaked blocks stay resident). Then free the pool.
  void measure_memory_and_free_the_pool() {
    rss_untrimmed_ = rss_bytes();
    rss_peak_ = std::max(rss_peak_, rss_untrimmed_);
    give_back_free_memory();
    rss_end_ = rss_bytes();
    stats_ = pool_.stats();
    pool_.free();
    no_children_ = test::eventually([] { return test::children().empty(); }, 5s);
    fds_after_ = test::open_fds().size();
  }

  void print_outcomes_by_kind() const {
    std::printf("\n%-10s %10s", "kind", "submitted");
    for (const char* o : outcome_names) std::printf(" %13s", o);
    std::printf("\n");
    for (int k = 0; k < kinds; ++k) {
      std::printf("%-10s %10" PRIu64, kind_names[k], t_.submitted[k].load());
      for (int o = 0; o < outcomes; ++o) std::printf(" %13" PRIu64, t_.ended[k][o].load());
      std::printf("\n");
    }
    std::printf("%-10s %10" PRIu64, "total", submitted_);
    for (auto c : totals()) std::printf(" %13" PRIu64, c);
    std::printf("\n\n");
  }

  void print_figures() {
    const auto col = totals();
    const double secs = std::chrono::duration<double>(elapsed_).count();
    std::printf("jobs submitted     %" PRIu64 " in %.1f s (%.0f/s)\n", submitted_, secs, static_cast<double>(submitted_) / secs);
    std::printf("completed          %" PRIu64 "\n", col[done]);
    std::printf("failed             %" PRIu64 ": job_failed %" PRIu64 ", worker_lost %" PRIu64 ", job_timeout %" PRIu64
                ", payload_error %" PRIu64 ", other %" PRIu64 "\n",
                failed_jobs(), col[failed], col[lost], col[timed_out], col[payload], col[cancelled] + col[other]);
    std::printf("lost               %" PRIu64 "\n", lost_jobs());
    std::printf("duplicated         %" PRIu64 "\n", t_.duplicated.load());
    std::printf("wrong results      %" PRIu64 "\n", t_.wrong.load());
    std::printf("unexpected errors  %" PRIu64 "\n", t_.unexpected.load());
    std::printf("bad job_contexts   %" PRIu64 ": attempt %" PRIu64 ", worker %" PRIu64 ", queued %" PRIu64
                " (left out of the queue latency)\n",
                bad_contexts(), t_.bad_context[0].load(), t_.bad_context[1].load(), t_.bad_context[2].load());
    std::printf("kills sent         %" PRIu64 "\n", t_.kills.load());
    std::printf("respawns           %" PRIu64 " (forks %" PRIu64 ", retried %" PRIu64 ", fork server restarts %" PRIu64 ")\n",
                stats_.respawns, stats_.forks, stats_.retried, stats_.fork_server_restarts);
    std::printf("pool stats         submitted %" PRIu64 ", completed %" PRIu64 ", failed %" PRIu64 "\n", stats_.submitted,
                stats_.completed, stats_.failed);
    std::printf("queue latency      max %.1f ms (%.1f ms on a first run), p50 < %.3f ms, p99 < %.3f ms\n",
                static_cast<double>(t_.max_queued_ns.load()) / 1e6, static_cast<double>(t_.max_queued_first_ns.load()) / 1e6,
                static_cast<double>(queued_quantile_us(0.5)) / 1e3, static_cast<double>(queued_quantile_us(0.99)) / 1e3);
    std::printf("longest no job ended %.1f ms, %.1f s into the run\n", static_cast<double>(t_.max_gap_ns.load()) / 1e6,
                static_cast<double>(t_.max_gap_at_ns.load()) / 1e9);
    for (const auto& stall : stalls_) std::printf("  stall: %s\n", stall.c_str());
    {
      std::lock_guard lock(t_.m);
      if (!t_.slowest.empty()) std::printf("longest first wait %s\n", t_.slowest.c_str());
    }
    std::printf("supervisor RSS     start %.1f MiB (after a %.0f s warm-up), end %.1f MiB (%.1f before trimming),"
                " peak %.1f MiB; bound %.1f MiB%s\n",
                mib(rss_start_), std::chrono::duration<double>(warm_up()).count(), mib(rss_end_), mib(rss_untrimmed_),
                mib(rss_peak_), mib(rss_bound()), test::sanitized ? " (not judged under a sanitizer)" : "");
    std::printf("live workers       %zu of %u at the end\n", live_, cfg_.workers);
    if (live_ != cfg_.workers)  // which slot, and in what state: what a failure needs to be read
      for (const auto& w : pool_.workers())
        std::printf("  worker %d: pid %d, state %d, alive %d, running %u, respawns %u\n", w.id, static_cast<int>(w.pid),
                    static_cast<int>(w.state), w.pid > 0 && test::process_alive(w.pid), w.running, w.respawns);
    std::printf("open fds           %zu before start, %zu after free\n", fds_before_, fds_after_);
    {
      std::lock_guard lock(t_.m);
      for (const auto& e : t_.examples) std::printf("  e.g. %s\n", e.c_str());
    }
  }

  // The last line, "soak: ok" or "soak: FAILED: why"; the exit status.
  int verdict() {
    const auto col = totals();
    std::vector<std::string> why;
    if (!stalled_.empty()) why.push_back(stalled_);
    if (lost_jobs() || !all_ended_) why.push_back(std::to_string(lost_jobs()) + " jobs lost (never ended within 60 s)");
    if (t_.duplicated) why.push_back(std::to_string(t_.duplicated.load()) + " jobs ended more than once");
    if (t_.wrong) why.push_back(std::to_string(t_.wrong.load()) + " wrong results");
    if (t_.unexpected) why.push_back(std::to_string(t_.unexpected.load()) + " unexpected outcomes");
    if (bad_contexts()) why.push_back(std::to_string(bad_contexts()) + " job_contexts contradict what happened");
    if (!healed_ || live_ != cfg_.workers)
      why.push_back("the pool ended with " + std::to_string(live_) + " of " + std::to_string(cfg_.workers) + " live workers");
    if (stats_.submitted != submitted_ || stats_.completed != col[done] || stats_.failed != failed_jobs())
      why.push_back("pool_stats disagree with the jobs' events");
    if (cfg_.kill_every > 0ms && t_.kills == 0) why.push_back("no kill landed");
    if (!test::sanitized && rss_end_ > rss_bound())
      why.push_back("RSS grew from " + std::to_string(rss_start_ >> 20) + " to " + std::to_string(rss_end_ >> 20) + " MiB");
    if (!no_children_) why.push_back("a child process outlived free()");
    if (fds_after_ != fds_before_)
      why.push_back("open fds went from " + std::to_string(fds_before_) + " to " + std::to_string(fds_after_));

    if (why.empty()) {
      std::printf("soak: ok\n");
      return 0;
    }
    std::string all;
    for (const auto& w : why) all += (all.empty() ? "" : "; ") + w;
    std::printf("soak: FAILED: %s\n", all.c_str());
    return 1;
  }

 private:
  // RSS: what the process holds once warm is what it must hold to.
  clock_type::duration warm_up() const { return std::min<clock_type::duration>(10s, cfg_.duration / 10); }
  clock_type::duration report_every() const { return std::max<clock_type::duration>(10s, cfg_.duration / 12); }
  // 20% for what malloc_trim cannot give back (free chunks pinned between live ones
  // in the arenas of the pool's thread and ours) and for containers that reach their
  // high-water mark late, plus 16 MiB for a small process. A 2-minute run (~4 M jobs)
  // crosses it with a leak of ~8 bytes a job; LeakSanitizer finds the smaller ones.
  std::size_t rss_bound() const { return rss_start_ + rss_start_ / 5 + (std::size_t{16} << 20); }

  std::array<std::uint64_t, outcomes> totals() const {
    std::array<std::uint64_t, outcomes> col{};
    for (int k = 0; k < kinds; ++k)
      for (int o = 0; o < outcomes; ++o) col[static_cast<std::size_t>(o)] += t_.ended[k][o].load();
    return col;
  }
  std::uint64_t failed_jobs() const {
    const auto col = totals();
    return col[failed] + col[lost] + col[timed_out] + col[payload] + col[cancelled] + col[other];
  }
  std::uint64_t lost_jobs() const { return submitted_ - t_.ended_once.load(); }
  std::uint64_t bad_contexts() const { return t_.bad_context[0] + t_.bad_context[1] + t_.bad_context[2]; }
  std::uint64_t queued_quantile_us(double q) const {
    std::uint64_t buckets = 0;
    for (const auto& b : t_.queued_us_log2) buckets += b.load();
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < t_.queued_us_log2.size(); ++b) {
      seen += t_.queued_us_log2[b].load();
      if (static_cast<double>(seen) >= q * static_cast<double>(buckets)) return std::uint64_t{1} << b;
    }
    return std::uint64_t{0};
  }

  // Counts one end of a job; the first one only, so a second end shows as duplicated.
  bool end(const std::shared_ptr<record>& r, outcome o, const pc::job_context& c) {
    if (r->ends.fetch_add(1) != 0) {
      if (++t_.duplicated == 1)
        t_.note("job " + std::to_string(r->seq) + " (" + kind_names[r->k] + ") ended twice, the second time as " +
                outcome_names[o]);
      return false;
    }
    ++t_.ended[r->k][o];
    const std::int64_t now_ns = (clock_type::now() - t0_).count();
    const std::int64_t previous = t_.last_end_ns.exchange(now_ns);
    const std::int64_t gap = previous ? now_ns - previous : 0;
    for (auto seen = t_.max_gap_ns.load(); gap > seen;)
      if (t_.max_gap_ns.compare_exchange_weak(seen, gap)) {
        t_.max_gap_at_ns = now_ns;
        break;
      }
    if (!allowed[r->k][o]) {
      ++t_.unexpected;
      t_.note(std::string("a ") + kind_names[r->k] + " job ended as " + outcome_names[o]);
    }
    check_context(r, o, c);
    return true;
  }

  // The context must tell what happened: a job that reached a worker names it and
  // its run, a retried job runs at most 1 + retries times and a lost one exactly
  // that often, and no job was queued for longer than it has existed.
  void check_context(const std::shared_ptr<record>& r, outcome o, const pc::job_context& c) {
    const bool ran = o == done || o == failed || o == lost || o == timed_out || (o == payload && r->seq % 2);
    const auto age = clock_type::now() - r->submitted_at;
    auto us = [](auto d) { return std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(d).count()); };
    std::string bad;
    int why = 0;
    if (c.attempt > r->retries + 1 || (o == lost && c.attempt != r->retries + 1) || (ran && c.attempt < 1))
      bad = "attempt " + std::to_string(c.attempt);
    else if (++why, ran && c.worker.pid <= 0)
      bad = "worker pid " + std::to_string(c.worker.pid);
    else if (++why, c.queued < 0ns || c.queued > age)
      bad = "queued " + us(c.queued) + " us, for a job " + us(age) + " us old";
    if (!bad.empty()) {
      if (++t_.bad_context[why] <= 2)
        t_.note(std::string("a ") + kind_names[r->k] + " job with retries = " + std::to_string(r->retries) +
                " ended as " + outcome_names[o] + " with a job_context saying " + bad);
    } else {
      const auto q = c.queued.count();
      auto raise = [q](std::atomic<std::int64_t>& max) {
        for (auto seen = max.load(); q > seen;)
          if (max.compare_exchange_weak(seen, q)) return true;
        return false;
      };
      raise(t_.max_queued_ns);
      if (c.attempt <= 1 && raise(t_.max_queued_first_ns)) {
        std::lock_guard lock(t_.m);
        t_.slowest = std::string(kind_names[r->k]) + " job " + std::to_string(r->seq) + ", id " + std::to_string(c.id) +
                     ", ended as " + outcome_names[o] + ", ran " + us(c.running) + " us on worker " +
                     std::to_string(c.worker.id) + ", ended " + us(clock_type::now() - t0_) + " us into the run";
      }
      ++t_.queued_us_log2[static_cast<std::size_t>(std::bit_width(static_cast<std::uint64_t>(q / 1000)))];
    }
  }

  void finish(const std::shared_ptr<record>& r) {
    --t_.in_flight_of[r->k];
    ++t_.ended_once;
    room_.release();
  }

  void wrong(const std::shared_ptr<record>& r, const std::string& what) {
    ++t_.wrong;
    t_.note(std::string("a ") + kind_names[r->k] + " job (" + std::to_string(r->seq) + ") returned " + what);
  }

  auto on_error(std::shared_ptr<record> r) {
    return [this, r](const pc::job_error& e, const pc::job_context& c) {
      outcome o = other;
      if (dynamic_cast<const pc::worker_lost*>(&e)) o = lost;
      else if (dynamic_cast<const pc::job_timeout*>(&e)) o = timed_out;
      else if (dynamic_cast<const pc::payload_error*>(&e)) o = payload;
      else if (dynamic_cast<const pc::job_cancelled*>(&e)) o = cancelled;
      else if (const auto* f = dynamic_cast<const pc::job_failed*>(&e)) {
        o = failed;
        if (r->k == throwing && (f->type().find("out_of_range") == std::string::npos ||
                                 f->message() != "soak " + std::to_string(r->seq % 1'000'000)))
          wrong(r, "job_failed(" + f->type() + ", " + f->message() + ")");
      }
      if (o == timed_out) {
        const auto& te = static_cast<const pc::job_timeout&>(e);
        if (te.timeout() != job_timeout) wrong(r, "job_timeout of " + std::to_string(te.timeout().count()) + " ms");
      }
      if (end(r, o, c)) {
        if (o == other || o == cancelled) t_.note(std::string(kind_names[r->k]) + ": " + e.what());
        finish(r);
      }
    };
  }

  // A job whose result must be r->expect.
  auto on_number(std::shared_ptr<record> r) {
    return [this, r](const std::uint64_t& v, const pc::job_context& c) {
      if (end(r, done, c)) {
        if (v != r->expect) wrong(r, std::to_string(v));
        finish(r);
      }
    };
  }

  // A job whose result is not looked at: the throwing, timing-out and oversize ones
  // (end() judges a success where an error was due).
  auto on_any(std::shared_ptr<record> r) {
    return [this, r](const auto&, const pc::job_context& c) {
      if (end(r, done, c)) finish(r);
    };
  }

  // Draws a kind from the mix and submits one job of it.
  void submit_one() {
    int draw = static_cast<int>(rng_() % 1000);
    int k = 0;
    while (draw >= weight[k]) draw -= weight[k++];
    if (t_.in_flight_of[k].load() >= cap[k]) k = tiny;
    auto r = std::make_shared<record>();
    r->k = static_cast<kind>(k);
    r->seq = ++seq_;
    r->retries = rng_() % 4 == 0 ? 3 : 0;
    const pc::job_options o{.timeout = {}, .retries = r->retries};
    ++t_.in_flight_of[k];
    ++t_.submitted[k];
    switch (r->k) {
      case tiny: {
        r->expect = r->seq + 1;
        pool_.job([](std::uint64_t x) { return x + 1; }, r->seq, o)
            .on_done(on_number(r))
            .on_error(on_error(r));
        break;
      }
      case cpu: {
        const cpu_work w{r->seq, 50'000 + rng_() % 450'000};
        r->expect = spin_expected(w);
        pool_.job(&spin, w, o)
            .on_done(on_number(r))
            .on_error(on_error(r));
        break;
      }
      case large: {
        std::vector<std::uint8_t> data((256u << 10) + rng_() % ((2u << 20) - (256u << 10) + 1));
        std::vector<std::uint8_t> expected(data.size());
        for (std::size_t i = 0; i < data.size(); i += 8) {
          const std::uint64_t word = rng_();
          const std::size_t n = std::min<std::size_t>(8, data.size() - i);
          std::memcpy(&data[i], &word, n);
        }
        for (std::size_t i = 0; i < data.size(); ++i) expected[i] = static_cast<std::uint8_t>(data[i] + 1);
        r->bytes = data.size();
        r->expect = checksum(expected.data(), expected.size());
        pool_.job(&plus_one, std::move(data), o)
            .on_done([this, r](const std::vector<std::uint8_t>& v, const pc::job_context& c) {
              if (end(r, done, c)) {
                if (v.size() != r->bytes || checksum(v.data(), v.size()) != r->expect)
                  wrong(r, std::to_string(v.size()) + " bytes with another checksum");
                finish(r);
              }
            })
            .on_error(on_error(r));
        break;
      }
      case throwing: {
        pool_.job(&throws_out_of_range, static_cast<int>(r->seq % 1'000'000), o)
            .on_done(on_any(r))
            .on_error(on_error(r));
        break;
      }
      case timing_out: {
        pool_.job(&test::sleep_ms, 2000, {.timeout = job_timeout, .retries = r->retries})
            .on_done(on_any(r))
            .on_error(on_error(r));
        break;
      }
      case oversize: {
        // Over max_payload: a result the worker must refuse, or data the pool refuses at once.
        if (r->seq % 2)
          pool_.job(&makes_text, static_cast<int>(max_payload + 4096), o).on_done(on_any(r)).on_error(on_error(r));
        else
          pool_.job(&measures, std::string(max_payload + 4096, 'y'), o).on_done(on_any(r)).on_error(on_error(r));
        break;
      }
      default:
        break;
    }
  }

  // A stall: no job ended for 250 ms with jobs in flight. Say what the pool looked like.
  void watch_for_stalls() {
    std::int64_t reported = -1;
    while (!stop_killing_) {
      std::this_thread::sleep_for(20ms);  // wait-ok: the watchdog's pace
      const std::int64_t last = t_.last_end_ns.load();
      const std::int64_t now_ns = (clock_type::now() - t0_).count();
      if (last == 0 || last == reported || now_ns - last < 250'000'000 || stalls_.size() >= 3 ||
          t_.ended_once.load() == total_submitted(t_))
        continue;
      reported = last;
      std::string what = "no job ended from " + std::to_string(last / 1'000'000) + " ms into the run: ";
      const auto s = pool_.stats();
      what += std::to_string(s.queued) + " queued, " + pool_thread_state() + "; workers";
      for (const auto& w : pool_.workers())
        what += " [" + std::to_string(w.id) + ": pid " + std::to_string(w.pid) + ", " +
                (w.state == pc::worker_state::ready ? "ready" : w.state == pc::worker_state::starting ? "starting" : "backoff") +
                ", " + std::to_string(w.running) + " running]";
      stalls_.push_back(std::move(what));
    }
  }

  // SIGKILLs a random worker every kill_every, with ::kill, from outside the library.
  void kill_workers() {
    if (cfg_.kill_every == 0ms) return;
    std::mt19937 pick(static_cast<unsigned>(cfg_.seed));
    while (!stop_killing_) {
      std::this_thread::sleep_for(cfg_.kill_every);  // wait-ok: the storm's pace
      const auto ws = pool_.workers();
      if (ws.empty()) continue;
      const pid_t pid = ws[pick() % ws.size()].pid;
      if (pid > 0 && ::kill(pid, SIGKILL) == 0) ++t_.kills;
    }
  }

  const settings cfg_;
  const std::size_t fds_before_ = test::open_fds().size();
  tally t_;
  std::counting_semaphore<> room_;
  const clock_type::time_point t0_ = clock_type::now();
  std::atomic<bool> stop_killing_{false};
  std::mt19937_64 rng_;
  std::uint64_t seq_ = 0;
  std::vector<std::string> stalls_;  // written by the watchdog, read once it is joined
  std::string stalled_;
  std::size_t rss_start_ = 0, rss_peak_ = 0, rss_untrimmed_ = 0, rss_end_ = 0;
  std::uint64_t submitted_ = 0;
  bool all_ended_ = false, healed_ = false, no_children_ = false;
  std::size_t live_ = 0, fds_after_ = 0;
  clock_type::duration elapsed_{};
  pc::pool_stats stats_{};
  pc::pool pool_;  // after what its callbacks touch: they may fire until it is freed
  std::thread watchdog_, killer_;
};

}  // namespace

int main(int argc, char** argv) {
  soak_run run(parse(argc, argv));
  run.start_pool_and_storm();
  run.submit_until_time_is_up();
  run.wait_for_every_job_then_stop_the_storm();
  run.wait_for_the_pool_to_heal();
  run.measure_memory_and_free_the_pool();
  run.print_outcomes_by_kind();
  run.print_figures();
  return run.verdict();
}
