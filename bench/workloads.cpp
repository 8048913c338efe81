// The W1-W5 workloads of bench/README.md, through the public API only,
// and the floor this machine sets, measured by the same program.
//
//   workloads [all|w1|w3|w4|w5|daemon|floor] [--runs N] [--json FILE] [--quick]
//             [--daemon PATH] [--cli PATH]
//
// Each workload runs N times (3) on a fresh pool of exactly 2 workers; the table
// shows the median with min and max. Every result is checked: a wrong one fails
// the run. --quick shrinks the counts (for CI: it shows a collapse, not figures).

#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <parallelcode/parallelcode.hpp>

#include "processes.hpp"
#include "report.hpp"

#if PARALLELCODE_BENCH_TBB
#include <future>
#include <memory>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/version.h>
#endif

namespace {

namespace pc = parallelcode;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }
double us_since(clock_type::time_point t0) { return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count(); }

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("wrong result: " + what);
}

struct scale {
  int w1_warmup = 20'000, w1_jobs = 200'000, w2_warmup = 1'000, w2_jobs = 20'000;
  int w3_jobs = 40, w4_warmup = 100, w4_jobs = 2'000;
  bool big_jobs = true;  // W4's 64 MiB and 1 GiB single jobs
  int daemon_lines = 200'000, submits = 20;  // a run's map, and its one-job submits
};

// --- W1, W2: tiny jobs ------------------------------------------------------

struct greeting {
  std::string text;
  template <class A>
  void serialize(A& a) {
    a(text);
  }
};

std::string hello(const greeting& g) { return "Hello " + g.text + "!"; }

struct w1w2_result {
  double jobs_per_s;
  double map_jobs_per_s;  // W1's job as items of one map() call
  double p50, p90, p99, max;
};

w1w2_result run_w1_w2(const scale& s) {
  pc::pool pool;
  pool.start({.workers = 2});
  auto burst = [&](int n) {
    std::vector<pc::job_handle<std::string>> handles;
    handles.reserve(static_cast<std::size_t>(n));
    const auto t0 = clock_type::now();
    for (int i = 0; i < n; ++i) handles.push_back(pool.job(&hello, greeting{"world"}));
    for (auto& h : handles) check(h.result() == "Hello world!", "W1");
    return seconds_since(t0);
  };
  burst(s.w1_warmup);
  const auto before = pool.stats();
  const double w1 = burst(s.w1_jobs);
  const auto after = pool.stats();
  std::fprintf(stderr, "W1: %llu dispatch batches, %llu jobs handed ahead, %llu taken back\n",
               static_cast<unsigned long long>(after.dispatch_batches - before.dispatch_batches),
               static_cast<unsigned long long>(after.handed_ahead - before.handed_ahead),
               static_cast<unsigned long long>(after.taken_back - before.taken_back));

  // The same job as one map() over five times as many items, the inputs made beforehand
  // (as Pool.map(f, inputs) is timed): first call to last result, every result checked.
  const std::vector<greeting> inputs(static_cast<std::size_t>(s.w1_jobs) * 5, greeting{"world"});
  auto mapped = [&](std::size_t n) {
    const auto t0 = clock_type::now();
    auto m = pool.map(&hello, std::span(inputs).first(n));
    const std::vector<std::string> out = std::move(m).results();
    const double took = seconds_since(t0);
    check(out.size() == n && std::all_of(out.begin(), out.end(), [](const auto& r) { return r == "Hello world!"; }),
          "W1 map");
    std::fprintf(stderr, "W1 map: %zu items in %zu chunks\n", n, m.chunks());
    return n / took;
  };
  mapped(static_cast<std::size_t>(s.w1_warmup));
  const double w1_map = mapped(inputs.size());

  for (int i = 0; i < s.w2_warmup; ++i) check(pool.job(&hello, greeting{"world"}).result() == "Hello world!", "W2");
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(s.w2_jobs));
  for (int i = 0; i < s.w2_jobs; ++i) {
    const auto t0 = clock_type::now();
    check(pool.job(&hello, greeting{"world"}).result() == "Hello world!", "W2");
    us.push_back(us_since(t0));
  }
  std::sort(us.begin(), us.end());
  auto rank = [&](double p) {  // nearest rank
    const auto k = static_cast<std::size_t>(std::ceil(p * static_cast<double>(us.size())));
    return us[std::max<std::size_t>(k, 1) - 1];
  };
  return {s.w1_jobs / w1, w1_map, rank(0.50), rank(0.90), rank(0.99), us.back()};
}

#if PARALLELCODE_BENCH_TBB
// W1's jobs in-process on oneTBB, the reference a C++ user would pick when isolation
// does not matter: the same job, count, warm-up and checks, one enqueue and one future each.
double run_w1_tbb(const scale& s) {
  // Workers are capped at cores - 1 (1 here) and arena(2) reserves a slot for the
  // caller, which only waits: without these, one thread would run every job.
  tbb::global_control threads(tbb::global_control::max_allowed_parallelism, 3);
  tbb::task_scheduler_handle scheduler{tbb::attach{}};
  double seconds = 0;
  {
    tbb::task_arena arena(2, 0);
    auto burst = [&](int n) {
      std::vector<std::future<std::string>> futures;
      futures.reserve(static_cast<std::size_t>(n));
      const auto t0 = clock_type::now();
      for (int i = 0; i < n; ++i) {
        // A promise per submit, as a future-returning submit() is written: enqueue calls its functor const.
        auto p = std::make_shared<std::promise<std::string>>();
        futures.push_back(p->get_future());
        arena.enqueue([p, g = greeting{"world"}] { p->set_value(hello(g)); });
      }
      for (auto& f : futures) check(f.get() == "Hello world!", "W1 oneTBB");
      return seconds_since(t0);
    };
    burst(s.w1_warmup);
    seconds = burst(s.w1_jobs);
  }
  // Join TBB's threads: the pools after this one fork from a process without them.
  tbb::finalize(scheduler, std::nothrow);
  return s.w1_jobs / seconds;
}
#endif

// --- W3: CPU scaling --------------------------------------------------------

std::string fnv(std::uint64_t n) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::uint64_t i = 0; i < n; ++i) {
    h ^= i & 0xff;
    h *= 0x100000001b3ULL;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

// N for a job of about 20 ms here, measured in this process.
std::uint64_t fnv_for_20ms() {
  check(fnv(1000) == "9ebd4ca7a79e5ddd" && fnv(150000) == "62f7fa668ffa05d5" && fnv(2700000) == "29568990e7f7d685",
        "fnv check values");
  const std::uint64_t probe = 10'000'000;
  double best = 1e9;
  for (int i = 0; i < 3; ++i) {
    const auto t0 = clock_type::now();
    volatile auto keep = fnv(probe);
    (void)keep;
    best = std::min(best, seconds_since(t0));
  }
  return static_cast<std::uint64_t>(static_cast<double>(probe) * 0.020 / best);
}

struct w3_result {
  double t1, t2, speedup, bare_speedup;
};

// The same jobs in bare forked processes, no pool: 40 in one, then 20 in each of two.
// Their speedup is what this machine's two cores allow W3 at best.
double bare_speedup(const scale& s, std::uint64_t n) {
  auto timed = [&](int processes) {
    const auto t0 = clock_type::now();
    for (int p = 0; p < processes; ++p) {
      if (::fork() == 0) {
        for (int i = 0; i < s.w3_jobs / processes; ++i) {
          volatile auto keep = fnv(n);
          (void)keep;
        }
        ::_exit(0);
      }
    }
    for (int p = 0; p < processes; ++p) ::wait(nullptr);
    return seconds_since(t0);
  };
  const double t1 = timed(1);
  return t1 / timed(2);
}

w3_result run_w3(const scale& s, std::uint64_t n) {
  const std::string expect = fnv(n);
  auto timed = [&](unsigned workers) {
    pc::pool pool;
    pool.start({.workers = workers});
    check(pool.job(&fnv, std::uint64_t{1000}).result() == "9ebd4ca7a79e5ddd", "W3 warm-up");
    std::vector<pc::job_handle<std::string>> jobs;
    const auto t0 = clock_type::now();
    for (int i = 0; i < s.w3_jobs; ++i) jobs.push_back(pool.job(&fnv, n));
    for (auto& j : jobs) check(j.result() == expect, "W3");
    return seconds_since(t0);
  };
  const double t1 = timed(1), t2 = timed(2);
  return {t1, t2, t1 / t2, bare_speedup(s, n)};
}

// --- W4: payloads -----------------------------------------------------------

std::vector<std::uint8_t> payload(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>((i * 31 + 7) & 0xff);
  return v;
}

std::uint32_t byte_sum(const std::vector<std::uint8_t>& v) {
  std::uint32_t sum = 0;
  for (std::uint8_t b : v) sum += b;
  return sum;
}

std::uint64_t length(const std::vector<std::uint8_t>& v) { return v.size(); }

// The same sum over a shared_bytes, and when the worker got to it (steady_clock is
// CLOCK_MONOTONIC: one clock for every process of the machine).
struct shared_sum {
  std::int64_t started_ns = 0;
  std::uint32_t sum = 0;
  template <class A>
  void serialize(A& a) {
    a(started_ns, sum);
  }
};

shared_sum shared_byte_sum(const pc::shared_bytes& b) {
  const auto started = clock_type::now().time_since_epoch();
  std::uint32_t sum = 0;
  for (std::uint8_t x : b.as<std::uint8_t>()) sum += x;
  return {std::chrono::duration_cast<std::chrono::nanoseconds>(started).count(), sum};
}

struct w4_result {
  double mib_s, transport_mib_s, s64, s1g;
  double shared_start_ms, shared_s, shared_gib_s;  // one 1 GiB shared_bytes job
  double local_gib_s;                               // its sum run here instead
};

template <class R>
double w4_burst(pc::pool& pool, R (*fn)(const std::vector<std::uint8_t>&), const std::vector<std::uint8_t>& src,
                int warmup, int jobs, R expect) {
  for (int i = 0; i < warmup; ++i) check(pool.job(fn, src).result() == expect, "W4 warm-up");
  std::vector<pc::job_handle<R>> handles;
  handles.reserve(static_cast<std::size_t>(jobs));
  const auto t0 = clock_type::now();
  for (int i = 0; i < jobs; ++i) handles.push_back(pool.job(fn, src));
  for (auto& h : handles) check(h.result() == expect, "W4");
  return jobs / seconds_since(t0);
}

w4_result run_w4(const scale& s) {
  const auto mib = payload(std::size_t{1} << 20);
  check(byte_sum(mib) == 133'693'440u, "W4 payload sum");
  pc::pool pool;
  pool.start({.workers = 2});
  w4_result r{};
  r.mib_s = w4_burst(pool, &byte_sum, mib, s.w4_warmup, s.w4_jobs, 133'693'440u);
  r.transport_mib_s = w4_burst(pool, &length, mib, s.w4_warmup, s.w4_jobs, std::uint64_t{1} << 20);
  if (s.big_jobs) {
    for (auto [bytes, expect, out] : {std::tuple{std::size_t{64} << 20, 4'261'412'864u, &r.s64},
                                      std::tuple{std::size_t{1} << 30, 3'758'096'384u, &r.s1g}}) {
      const auto big = payload(bytes);
      const auto t0 = clock_type::now();
      check(pool.job(&byte_sum, big).result() == expect, "W4 single job of " + std::to_string(bytes >> 20) + " MiB");
      *out = seconds_since(t0);
    }
    pc::shared_bytes shared(std::size_t{1} << 30);
    const auto src = shared.as<std::uint8_t>();
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<std::uint8_t>((i * 31 + 7) & 0xff);
    const auto t0 = clock_type::now();
    const shared_sum x = pool.job(&shared_byte_sum, shared).result();
    r.shared_s = seconds_since(t0);
    check(x.sum == 3'758'096'384u, "W4 1 GiB shared_bytes sum");
    r.shared_start_ms = std::chrono::duration<double, std::milli>(clock_type::time_point(std::chrono::nanoseconds(x.started_ns)) - t0).count();
    r.shared_gib_s = 1.0 / (r.shared_s - r.shared_start_ms / 1000);
    const auto t1 = clock_type::now();
    check(shared_byte_sum(shared).sum == x.sum, "W4 1 GiB shared_bytes sum here");
    r.local_gib_s = 1.0 / seconds_since(t1);  // the same loop over pages this process has mapped
  }
  return r;
}

// --- W5: kill a busy worker -------------------------------------------------

pid_t sleep_2s(int) {
  std::this_thread::sleep_for(2000ms);
  return ::getpid();
}

pid_t my_pid(int) { return ::getpid(); }

struct w5_result {
  double a_error_ms;       // A's worker_lost, after the kill
  double new_pid_ms;       // a new pid served a job, after the kill
  double b_ms, q_ms, n_ms; // B, the last of Q1-Q4, N: done, after the kill
  bool after_ok;           // 20 more jobs on 2 workers
};

// Each job's end is taken from its own event (on_done, on_error), as a promise's
// handler would see it: a main thread polling seven handles on two cores would
// time its own turns on the CPU, not the pool.
w5_result run_w5() {
  pc::pool pool;
  pool.start({.workers = 2});
  std::atomic<clock_type::time_point> killed{clock_type::time_point::max()};
  auto ms_since_kill = [&] { return std::chrono::duration<double, std::milli>(clock_type::now() - killed.load()).count(); };
  const auto submitted = clock_type::now();
  auto a = pool.job(&sleep_2s, 0);
  auto b = pool.job(&sleep_2s, 1);
  std::vector<pc::job_handle<pid_t>> q;
  for (int i = 0; i < 4; ++i) q.push_back(pool.job(&my_pid, i));
  const pid_t victim = a.worker().pid;
  const pid_t other = b.worker().pid;

  std::atomic<double> a_failed{-1}, b_done{-1}, n_done{-1}, new_pid{-1};
  std::vector<std::atomic<double>> q_done(4);
  for (auto& d : q_done) d = -1;
  a.on_error([&](const pc::job_error&, const pc::job_context&) { a_failed = ms_since_kill(); });
  auto done_at = [&](std::atomic<double>& at) {
    return [&, victim, other](const pid_t& by, const pc::job_context&) {
      const double t = ms_since_kill();
      at = t;
      double none = -1;
      if (by != victim && by != other) new_pid.compare_exchange_strong(none, t);
    };
  };
  b.on_done(done_at(b_done));
  for (int i = 0; i < 4; ++i) q[static_cast<std::size_t>(i)].on_done(done_at(q_done[static_cast<std::size_t>(i)]));

  std::this_thread::sleep_until(submitted + 300ms);
  killed = clock_type::now();
  ::kill(victim, SIGKILL);
  auto n = pool.job(&my_pid, 9);
  n.on_done(done_at(n_done));

  for (auto* j : {&a, &b, &n}) check(j->wait_for(10s), "W5: a job hung");
  for (auto& j : q) check(j.wait_for(10s), "W5: a queued job hung");
  // A job has ended before its callbacks have run on the pool's thread: wait for them too.
  auto all_timed = [&] {
    bool all = a_failed >= 0 && b_done >= 0 && n_done >= 0;
    for (auto& d : q_done) all = all && d >= 0;
    return all;
  };
  for (const auto until = clock_type::now() + 10s; !all_timed() && clock_type::now() < until;) std::this_thread::yield();
  check(all_timed(), "W5: a job's callback never ran");
  try {
    a.result();
    check(false, "W5: A should have failed");
  } catch (const pc::worker_lost& e) {
    check(e.pid() == victim && e.signal() == SIGKILL, "W5: A's worker_lost names the pid and SIGKILL");
  }
  check(b.result() == other, "W5: B");
  for (auto& j : q) j.result();
  n.result();
  w5_result r{a_failed, new_pid, b_done, -1, n_done, false};
  for (auto& d : q_done) r.q_ms = std::max(r.q_ms, d.load());
  std::vector<pc::job_handle<pid_t>> more;
  for (int i = 0; i < 20; ++i) more.push_back(pool.job(&my_pid, i));
  for (auto& j : more) j.result();
  r.after_ok = pool.workers().size() == 2;
  return r;
}

// --- the daemon: the CLI, the socket, the daemon, its pool, and back ---------

// Runs a program to its end, its standard output and error into files; its exit status.
// Spawned (vfork), not forked: a fork of this program's heap would be timed with it.
int run_program(const std::vector<std::string>& argv, const std::string& stdout_path, const std::string& stderr_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 1, stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&files, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  pid_t pid = 0;
  const int e = ::posix_spawn(&pid, args[0], &files, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  if (e != 0) throw std::system_error(e, std::generic_category(), "posix_spawn " + argv[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct daemon_result {
  double map_jobs_s, submit_ms, true_ms;  // true_ms: /bin/true spawned the same way, the floor
};

// One daemon of 2 workers on a socket of its own, as an operator starts it, and what
// its CLI sees: a map of `lines` hello lines, then `submits` one-job submits (their median).
daemon_result run_daemon(const scale& s, const std::string& daemon, const std::string& cli) {
  bench::temp_dir dir("pc-daemon-bench");
  const std::string sock = (dir.path() / "sock").string(), out = (dir.path() / "out").string();
  const std::string log = (dir.path() / "cli.log").string();
  auto run = [&](const std::vector<std::string>& argv) { return run_program(argv, out, log); };
  bench::process d({daemon, "--workers", "2", "--socket", sock, "--log-level", "error"}, dir.path() / "daemon.log");
  bench::wait_until([&] { return run({cli, "--socket", sock, "status"}) == 0; }, 10s, "the daemon to answer");
  std::string in, want;
  for (int i = 0; i < s.daemon_lines; ++i) {
    in += "{\"text\":\"" + std::to_string(i) + "\"}\n";
    want += "\"Hello " + std::to_string(i) + "!\"\n";
  }
  const std::string input = (dir.path() / "in.jsonl").string();
  std::ofstream(input) << in;
  const std::vector<std::string> map = {cli, "--socket", sock, "map", "hello", input};
  check(run(map) == 0 && bench::file_text(out) == want, "daemon: the warm-up map's lines: " + bench::tail_of(log));
  const auto t0 = clock_type::now();
  const int status = run(map);
  const double map_s = seconds_since(t0);
  check(status == 0 && bench::file_text(out) == want, "daemon: the map's lines: " + bench::tail_of(log));
  std::vector<double> ms, floor_ms;
  for (int i = 0; i < s.submits; ++i) {
    const auto t2 = clock_type::now();
    check(run({"/bin/true"}) == 0, "daemon: /bin/true");
    floor_ms.push_back(us_since(t2) / 1000);
    const auto t1 = clock_type::now();
    const int st = run({cli, "--socket", sock, "submit", "hello", R"({"text":"world"})"});
    ms.push_back(us_since(t1) / 1000);
    check(st == 0 && bench::file_text(out) == "\"Hello world!\"\n", "daemon: submit's answer: " + bench::tail_of(log));
  }
  std::sort(ms.begin(), ms.end());
  std::sort(floor_ms.begin(), floor_ms.end());
  return {s.daemon_lines / map_s, ms[ms.size() / 2], floor_ms[floor_ms.size() / 2]};
}

// --- the floor --------------------------------------------------------------

// 64 bytes there and back between this process and a forked one, with the wakeup
// the pool uses: spin up to 50 us, yielding the core between looks, then sleep on
// a shared futex word that the waker exchanges to 0 before waking.
struct alignas(64) mailbox {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> sleeping{0};
  char data[64];
};

// lib/src/wake.hpp's, which the bench cannot include (the public API only).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#endif
}

void futex_wait(std::atomic<std::uint32_t>& w, std::uint32_t v) {
  timespec ts{0, 100'000'000};
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAIT, v, &ts, nullptr, 0);
}

void futex_wake(std::atomic<std::uint32_t>& w) {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&w), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

void post(mailbox& m, std::uint32_t seq, const char* msg) {
  std::memcpy(m.data, msg, 64);
  m.seq.store(seq, std::memory_order_seq_cst);
  if (m.sleeping.load() && m.sleeping.exchange(0)) futex_wake(m.sleeping);
}

void await(mailbox& m, std::uint32_t seq, char* into) {
  const auto until = clock_type::now() + 50us;
  while (m.seq.load(std::memory_order_acquire) != seq) {
    if (clock_type::now() < until) {
      for (int i = 0; i < 64 && m.seq.load(std::memory_order_acquire) != seq; ++i) cpu_relax();
      ::sched_yield();
      continue;
    }
    m.sleeping.store(1);
    if (m.seq.load() != seq) futex_wait(m.sleeping, 1);
    m.sleeping.store(0);
  }
  std::memcpy(into, m.data, 64);
}

struct floor_result {
  double rtt_p50_us, rtt_p99_us, memcpy_gib_s, kill_exit_ms;
};

// SIGKILL to a sleeping child of ours until its pidfd says it is gone: what any
// pool pays before it can know a worker died (the kernel tears the process down).
double kill_to_exit_ms() {
  std::vector<double> ms;
  for (int i = 0; i < 20; ++i) {
    const pid_t child = ::fork();
    if (child == 0) {
      ::pause();
      ::_exit(0);
    }
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
    std::this_thread::sleep_for(2ms);  // asleep in pause(), as W5's worker is in its job
    const auto t0 = clock_type::now();
    ::kill(child, SIGKILL);
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 5000);
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    ::close(fd);
    ::waitpid(child, nullptr, 0);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

floor_result run_floor() {
  auto* box = static_cast<mailbox*>(
      ::mmap(nullptr, 2 * sizeof(mailbox), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  new (&box[0]) mailbox{};
  new (&box[1]) mailbox{};
  const int rounds = 20'000;
  const pid_t child = ::fork();
  if (child == 0) {
    char buf[64];
    for (int i = 1; i <= rounds + 1000; ++i) {
      await(box[0], static_cast<std::uint32_t>(i), buf);
      post(box[1], static_cast<std::uint32_t>(i), buf);
    }
    ::_exit(0);
  }
  char msg[64] = "ping", back[64];
  std::vector<double> us;
  for (int i = 1; i <= rounds + 1000; ++i) {
    const auto t0 = clock_type::now();
    post(box[0], static_cast<std::uint32_t>(i), msg);
    await(box[1], static_cast<std::uint32_t>(i), back);
    if (i > 1000) us.push_back(us_since(t0));  // the first 1000 warm up
  }
  ::waitpid(child, nullptr, 0);
  ::munmap(box, 2 * sizeof(mailbox));
  std::sort(us.begin(), us.end());

  // memcpy of 1 MiB, cached: the cost of one copy of a W4 payload.
  std::vector<char> from(1 << 20, 'x'), to(1 << 20);
  double best = 1e9;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = clock_type::now();
    for (int i = 0; i < 200; ++i) {
      std::memcpy(to.data(), from.data(), from.size());
      asm volatile("" : : "r"(to.data()) : "memory");
    }
    best = std::min(best, seconds_since(t0));
  }
  return {us[us.size() / 2], us[us.size() * 99 / 100], 200.0 * (1 << 20) / best / (1 << 30), kill_to_exit_ms()};
}

// --- the report -------------------------------------------------------------

using bench::figure;
using bench::fmt;

struct options {
  std::string which = "all", json_path;
  std::string daemon, cli;  // default: the build tree's, beside this program
  int runs = 3;
  scale s;
  bool want(const char* w) const { return which == "all" || which == w; }
};

// Exits with status 2 and the usage on an unknown option.
options parse(int argc, char** argv) {
  options o;
  o.daemon = bench::next_to_program(argv[0], "../supervisor/daemon/parallelcode-supervisor");
  o.cli = bench::next_to_program(argv[0], "../supervisor/cli/parallelcode");
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) o.runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--json" && i + 1 < argc) o.json_path = argv[++i];
    else if (a == "--quick") o.s = {2'000, 20'000, 100, 2'000, 8, 10, 100, false, 20'000, 5};
    else if (a == "--daemon" && i + 1 < argc) o.daemon = argv[++i];
    else if (a == "--cli" && i + 1 < argc) o.cli = argv[++i];
    else if (a[0] != '-') o.which = a;
    else {
      std::fprintf(stderr, "usage: workloads [all|w1|w3|w4|w5|daemon|floor] [--runs N] [--json FILE] [--quick] "
                           "[--daemon PATH] [--cli PATH]\n");
      std::exit(2);
    }
  }
  return o;
}

// The floor, every run; each of its figures is the median over the runs.
floor_result measure_floor(int runs, std::vector<floor_result>& floors) {
  for (int r = 0; r < runs; ++r) floors.push_back(run_floor());
  auto med = [&](auto get) {
    std::vector<double> v;
    for (const auto& f : floors) v.push_back(get(f));
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  return {med([](auto& f) { return f.rtt_p50_us; }), med([](auto& f) { return f.rtt_p99_us; }),
          med([](auto& f) { return f.memcpy_gib_s; }), med([](auto& f) { return f.kill_exit_ms; })};
}

void add_floor(const std::vector<floor_result>& floors, std::vector<figure>& figs) {
  figs.push_back({"floor", "64-byte round trip, p50 (spin 50 us, then futex)", "us", "", {}, ""});
  figs.push_back({"floor", "64-byte round trip, p99", "us", "", {}, ""});
  figs.push_back({"floor", "memcpy 1 MiB, cached", "GiB/s", "", {}, ""});
  figs.push_back({"floor", "SIGKILL until a sleeping child is gone (pidfd)", "ms", "", {}, ""});
  for (const auto& f : floors) {
    figs[figs.size() - 4].runs.push_back(f.rtt_p50_us);
    figs[figs.size() - 3].runs.push_back(f.rtt_p99_us);
    figs[figs.size() - 2].runs.push_back(f.memcpy_gib_s);
    figs[figs.size() - 1].runs.push_back(f.kill_exit_ms);
  }
}

void add_w5(int runs, const floor_result& floor, std::vector<figure>& figs) {
  figure a{"W5", "A: worker_lost after the kill", "ms", "<= 1", {}, ""};
  figure np{"W5", "a new pid serves a job after the kill", "ms", "<= 2", {}, ""};
  figure q{"W5", "Q1-Q4 all done after the kill", "ms", "complete", {}, ""};
  figure n{"W5", "N done after the kill", "ms", "", {}, ""};
  figure b{"W5", "B done after the kill (it sleeps 2 s)", "ms", "complete", {}, ""};
  for (int r = 0; r < runs; ++r) {
    const auto x = run_w5();
    check(x.after_ok, "W5: 2 workers after");
    a.runs.push_back(x.a_error_ms);
    np.runs.push_back(x.new_pid_ms);
    q.runs.push_back(x.q_ms);
    n.runs.push_back(x.n_ms);
    b.runs.push_back(x.b_ms);
  }
  a.note = "kill to exit " + fmt(floor.kill_exit_ms) + " ms; pool/floor " + fmt(a.median() / floor.kill_exit_ms) + "x";
  figs.insert(figs.end(), {a, np, q, n, b});
}

void add_w1_w2(const scale& s, int runs, const floor_result& floor, std::vector<figure>& figs) {
  figure w1{"W1", "tiny jobs, one job() each", "jobs/s", ">= 2,000,000", {}, ""};
  figure w1_map{"W1", "the same jobs as one map() call", "jobs/s", ">= 8,700,000", {}, ""};
  figure p50{"W2", "latency p50", "us", "<= 5", {}, ""};
  figure p90{"W2", "latency p90", "us", "", {}, ""};
  figure p99{"W2", "latency p99", "us", "<= 15", {}, ""};
  figure mx{"W2", "latency max", "us", "", {}, ""};
#if PARALLELCODE_BENCH_TBB
  figure tbb_w1{"W1", "oneTBB " + std::to_string(TBB_VERSION_MAJOR) + " task_arena::enqueue + a promise per job, 2 threads",
                "jobs/s", "", {}, ""};
#else
  std::fprintf(stderr, "W1: the oneTBB reference is left out (built without libtbb-dev: apt-get install libtbb-dev)\n");
#endif
  for (int r = 0; r < runs; ++r) {
    const auto x = run_w1_w2(s);
    w1.runs.push_back(x.jobs_per_s);
    w1_map.runs.push_back(x.map_jobs_per_s);
    p50.runs.push_back(x.p50);
    p90.runs.push_back(x.p90);
    p99.runs.push_back(x.p99);
    mx.runs.push_back(x.max);
#if PARALLELCODE_BENCH_TBB
    tbb_w1.runs.push_back(run_w1_tbb(s));  // right after ours, so both see this run's machine
#endif
  }
#if PARALLELCODE_BENCH_TBB
  w1.note = "oneTBB " + fmt(tbb_w1.median()) + " jobs/s; pool/TBB " + fmt(w1.median() / tbb_w1.median()) + "x";
#endif
  p50.note = "rtt " + fmt(floor.rtt_p50_us) + " us; pool/floor " + fmt(p50.median() / floor.rtt_p50_us) + "x";
  p99.note = "rtt " + fmt(floor.rtt_p99_us) + " us; pool/floor " + fmt(p99.median() / floor.rtt_p99_us) + "x";
  figs.push_back(w1);
#if PARALLELCODE_BENCH_TBB
  figs.push_back(tbb_w1);
#endif
  figs.insert(figs.end(), {w1_map, p50, p90, p99, mx});
}

void add_daemon(const scale& s, int runs, const std::string& daemon, const std::string& cli, std::vector<figure>& figs) {
  figure map{"daemon", "`parallelcode map hello`, " + std::to_string(s.daemon_lines) + " lines, end to end", "jobs/s",
             ">= 400,000", {}, "the CLI, the socket, the daemon, its pool and back"};
  figure submit{"daemon", "`parallelcode submit` one job, wall, the CLI's start included", "ms", "<= 1", {}, ""};
  figure floor{"daemon", "`/bin/true`, spawned the same way", "ms", "", {}, ""};
  for (int r = 0; r < runs; ++r) {
    const auto x = run_daemon(s, daemon, cli);
    map.runs.push_back(x.map_jobs_s);
    submit.runs.push_back(x.submit_ms);
    floor.runs.push_back(x.true_ms);
  }
  submit.note = "the median of " + std::to_string(s.submits) + " a run; /bin/true " + fmt(floor.median()) + " ms";
  figs.insert(figs.end(), {map, submit});
}

void add_w3(const scale& s, int runs, std::vector<figure>& figs) {
  const std::uint64_t n = fnv_for_20ms();
  figure t1{"W3", "40 x fnv(" + std::to_string(n) + "), 1 worker", "s", "", {}, ""};
  figure t2{"W3", "the same, 2 workers", "s", "", {}, ""};
  figure sp{"W3", "speedup", "x", ">= 1.97", {}, ""};
  figure bare{"W3", "speedup of bare processes", "x", "", {}, ""};  // shown as sp's floor
  for (int r = 0; r < runs; ++r) {
    const auto x = run_w3(s, n);
    t1.runs.push_back(x.t1);
    t2.runs.push_back(x.t2);
    sp.runs.push_back(x.speedup);
    bare.runs.push_back(x.bare_speedup);
  }
  const auto [lo, hi] = std::minmax_element(bare.runs.begin(), bare.runs.end());
  sp.note = "bare processes " + fmt(bare.median()) + "x (" + fmt(*lo) + "-" + fmt(*hi) + "); ideal 2.00";
  figs.insert(figs.end(), {t1, t2, sp});
}

void add_w4(const scale& s, int runs, const floor_result& floor, std::vector<figure>& figs) {
  const double floor_mib_s = floor.memcpy_gib_s * 1024;
  figure sum{"W4", "1 MiB payloads, byte sum", "MiB/s", ">= 8,192", {}, ""};
  figure tr{"W4", "1 MiB payloads, transport only", "MiB/s", "", {}, ""};
  figure big{"W4", "one 64 MiB job", "ms", "<= 30", {}, ""};
  figure huge{"W4", "one 1 GiB job", "s", "<= 1.0", {}, ""};
  figure sh_start{"W4", "one 1 GiB shared_bytes job: job() to its start", "ms", "<= 1", {}, ""};
  figure sh_all{"W4", "the same job, end to end", "s", "", {}, ""};
  figure sh_rate{"W4", "its byte sum, from its start", "GiB/s", "", {}, ""};
  figure local{"W4", "the same sum in the caller, its pages mapped", "GiB/s", "", {}, ""};  // for sh_rate's note
  for (int r = 0; r < runs; ++r) {
    const auto x = run_w4(s);
    sum.runs.push_back(x.mib_s);
    tr.runs.push_back(x.transport_mib_s);
    if (s.big_jobs) {
      big.runs.push_back(x.s64 * 1000);
      huge.runs.push_back(x.s1g);
      sh_start.runs.push_back(x.shared_start_ms);
      sh_all.runs.push_back(x.shared_s);
      sh_rate.runs.push_back(x.shared_gib_s);
      local.runs.push_back(x.local_gib_s);
    }
  }
  // How many 1 MiB memcpys one job's transport costs.
  tr.note = "memcpy " + fmt(floor_mib_s) + " MiB/s; floor/pool " + fmt(floor_mib_s / tr.median()) + "x";
  figs.insert(figs.end(), {sum, tr});
  if (!local.runs.empty()) sh_rate.note = local.name + ": " + fmt(local.median()) + " GiB/s";
  if (s.big_jobs) figs.insert(figs.end(), {big, huge, sh_start, sh_all, sh_rate});
}


void write_json(const std::string& path, int runs, const std::vector<figure>& figs) {
  std::ofstream out(path);
  out << "{";
  bench::write_figures(out, runs, figs);
  out << "}\n";
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    std::vector<figure> figs;
    std::vector<floor_result> floors;
    const floor_result floor = measure_floor(o.runs, floors);
    if (o.want("floor")) add_floor(floors, figs);
    // W5 first: after W4 the host has a big heap, and each fork of it, and each exit
    // of a worker forked from it, takes milliseconds more (3.7 ms for A's error instead of 1).
    if (o.want("w5")) add_w5(o.runs, floor, figs);
    if (o.want("daemon")) add_daemon(o.s, o.runs, o.daemon, o.cli, figs);
    if (o.want("w1") || o.want("w2")) add_w1_w2(o.s, o.runs, floor, figs);
    if (o.want("w3")) add_w3(o.s, o.runs, figs);
    if (o.want("w4")) add_w4(o.s, o.runs, floor, figs);
    bench::print_table(figs, "floor");
    if (!o.json_path.empty()) write_json(o.json_path, o.runs, figs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "workloads: %s\n", e.what());
    return 1;
  }
  return 0;
}
