// The remote workloads R1-R3 of bench/README.md ("Remote workloads"): one redis-server
// and the daemons, all started here, stopped here, through the public API and CLI.
//
//   remote_workloads [all|r1|r2|r3] [--runs N] [--json FILE] [--redis-server PATH]
//                    [--daemon PATH] [--cli PATH] [--prefetch N] [--jobs N]
//
// Each figure is the median of N runs (3) with min and max; each run has its own
// daemons and its own queue name. Every answer is checked: a wrong one fails the run.
// Readiness is waited for by events: PING, `status --json` showing the queue connected,
// each daemon in XINFO CONSUMERS after a first job.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <parallelcode/remote.hpp>

#include "processes.hpp"
#include "report.hpp"

namespace {

namespace pc = parallelcode;
namespace fs = std::filesystem;
using bench::fail_errno;
using bench::next_to_program;
using bench::process;
using bench::run_capture;
using bench::tail_of;
using bench::temp_dir;
using bench::wait_until;
using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("wrong result: " + what);
}

struct reply_deleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, reply_deleter>;

// A hiredis connection for the probes (PING, XPENDING, XINFO, INFO) the API does not offer.
class redis_probe {
 public:
  explicit redis_probe(int port) {
    const timeval tv{1, 0};
    ctx_ = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!ctx_ || ctx_->err) {
      const std::string why = ctx_ ? ctx_->errstr : "out of memory";
      if (ctx_) redisFree(ctx_);
      throw std::runtime_error("connecting to redis on port " + std::to_string(port) + ": " + why);
    }
  }
  ~redis_probe() { redisFree(ctx_); }
  redis_probe(const redis_probe&) = delete;
  redis_probe& operator=(const redis_probe&) = delete;

  reply_ptr command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    reply_ptr r(static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data())));
    if (!r) throw std::runtime_error("redis: " + std::string(ctx_->errstr));
    if (r->type == REDIS_REPLY_ERROR) throw std::runtime_error("redis " + args[0] + ": " + std::string(r->str, r->len));
    return r;
  }

 private:
  redisContext* ctx_ = nullptr;
};

std::string text(const redisReply* r) { return r->str ? std::string(r->str, r->len) : std::to_string(r->integer); }

int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    fail_errno("finding a free port");
  ::close(s);
  return ntohs(a.sin_port);
}

struct proc_stat {
  pid_t group = 0;
  double cpu_us = 0;  // utime + stime
};

std::optional<proc_stat> read_stat(const fs::path& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), {});
  const auto paren = s.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream rest(s.substr(paren + 2));  // from field 3 on: the name may hold blanks
  std::string f;
  proc_stat st;
  unsigned long long ticks = 0;
  for (int i = 3; i <= 15 && rest >> f; ++i) {
    if (i == 5) st.group = static_cast<pid_t>(std::stol(f));
    if (i == 14 || i == 15) ticks += std::stoull(f);
  }
  st.cpu_us = static_cast<double>(ticks) * 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  return st;
}

// CPU time of every live process in a process group (a daemon, its fork server, its workers).
double group_cpu_us(pid_t group) {
  double sum = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    if (const auto st = read_stat(e.path() / "stat"); st && st->group == group) sum += st->cpu_us;
  }
  return sum;
}

class redis_server {
 public:
  redis_server(const std::string& program, const fs::path& dir) : port_(free_port()), log_(dir / "redis.log") {
    proc_ = std::make_unique<process>(std::vector<std::string>{program, "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                                               "--dir", dir.string(), "--save", "", "--appendonly", "no",
                                                               "--daemonize", "no"},
                                      log_);
    wait_until(
        [&] {
          if (!proc_->running()) throw std::runtime_error("redis-server exited: " + tail_of(log_));
          try {
            redis_probe p(port_);
            return text(p.command({"PING"}).get()) == "PONG";
          } catch (const std::runtime_error&) {
            return false;
          }
        },
        10s, "redis-server to answer PING");
    probe_ = std::make_unique<redis_probe>(port_);
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  redis_probe& probe() { return *probe_; }
  int port() const { return port_; }
  // The server's user + system CPU time so far, in µs.
  double cpu_us() const { return group_cpu_us(proc_->pid()); }

 private:
  int port_;
  fs::path log_;
  std::unique_ptr<process> proc_;
  std::unique_ptr<redis_probe> probe_;
};

const std::string hello_args = R"({"text":"world"})";

bool is_hello(std::string_view r) { return r == "\"Hello world!\"" || r == "Hello world!"; }

struct paths {
  std::string redis_server = "redis-server", daemon, cli;
  std::vector<std::string> daemon_flags;  // --prefetch N: to see what the default costs
};

struct daemon_proc {
  std::unique_ptr<process> proc;
  std::string socket, consumer;  // consumer: its name in the group, host:pid
  fs::path log;
};

std::string host_name() {
  char h[256] = {};
  if (::gethostname(h, sizeof h - 1) != 0) std::strcpy(h, "localhost");
  return h;
}

// One run's queue and its daemons, all consuming before this returns.
class fleet {
 public:
  fleet(const paths& p, const temp_dir& dir, redis_server& redis, std::string queue, int daemons,
        std::vector<std::string> extra = {})
      : redis_(redis), queue_(std::move(queue)) {
    static int started = 0;
    for (int i = 0; i < daemons; ++i) {
      const std::string tag = queue_ + "-" + std::to_string(++started);
      daemon_proc d;
      d.socket = (dir.path() / (tag + ".sock")).string();
      std::vector<std::string> argv{p.daemon, "--workers", "2", "--socket", d.socket, "--queue", redis.url(),
                                    "--queue-name", queue_};
      argv.insert(argv.end(), p.daemon_flags.begin(), p.daemon_flags.end());
      argv.insert(argv.end(), extra.begin(), extra.end());
      d.log = dir.path() / (tag + ".log");
      d.proc = std::make_unique<process>(argv, d.log);
      d.consumer = host_name() + ":" + std::to_string(d.proc->pid());
      daemons_.push_back(std::move(d));
    }
    for (auto& d : daemons_) {
      const fs::path log = dir.path() / "status.log";
      wait_until(
          [&] {
            if (!d.proc->running()) throw std::runtime_error("a daemon exited: " + tail_of(d.log));
            const auto [status, out] = run_capture({p.cli, "--socket", d.socket, "status", "--json"}, log);
            return status == 0 && out.find("\"connected\":true") != std::string::npos;
          },
          20s, "a daemon's status --json", 5ms);
    }
  }
  ~fleet() {
    for (auto& d : daemons_) d.proc->terminate();
  }
  fleet(const fleet&) = delete;
  fleet& operator=(const fleet&) = delete;

  // Hello jobs until every daemon has taken one: Redis 7.0 lists a consumer in XINFO
  // CONSUMERS only once it has read an entry. This is also the warm-up.
  void warm(pc::remote_queue& q, int at_least) {
    const std::vector<pc::remote_call> calls(64, pc::remote_call{"hello", hello_args, {}});
    const auto end = clock_type::now() + 20s;
    for (int sent = 0; sent < at_least || consumers() < daemons_.size(); sent += static_cast<int>(calls.size())) {
      if (clock_type::now() > end) throw std::runtime_error("timed out waiting for every daemon to take a job");
      for (auto& j : q.submit_all(calls))
        if (!j || !j->wait_for(20s) || !is_hello(j->result())) throw std::runtime_error("a warm-up job failed");
    }
  }

  std::size_t consumers() {
    const auto r = redis_.probe().command({"XINFO", "CONSUMERS", jobs_key(), "daemons"});
    return r->elements;
  }
  double cpu_us() const {
    double sum = 0;
    for (const auto& d : daemons_) sum += group_cpu_us(d.proc->pid());
    return sum;
  }
  std::string jobs_key() const { return "pc:{" + queue_ + "}:jobs"; }
  const std::string& name() const { return queue_; }
  std::vector<daemon_proc>& daemons() { return daemons_; }

 private:
  redis_server& redis_;
  std::string queue_;
  std::vector<daemon_proc> daemons_;
};

// --- the report -------------------------------------------------------------

using bench::figure;
using bench::fmt;

// INFO commandstats as command -> {calls, usec}.
std::map<std::string, std::pair<double, double>> commandstats(redis_probe& r) {
  std::map<std::string, std::pair<double, double>> out;
  std::istringstream in(text(r.command({"INFO", "commandstats"}).get()));
  for (std::string line; std::getline(in, line);) {
    // cmdstat_evalsha:calls=40,usec=1234,usec_per_call=30.85,...
    if (!line.starts_with("cmdstat_")) continue;
    const auto colon = line.find(':');
    double calls = 0, usec = 0;
    std::sscanf(line.c_str() + colon + 1, "calls=%lf,usec=%lf", &calls, &usec);
    out[line.substr(8, colon - 8)] = {calls, usec};
  }
  return out;
}

// CPU time of each party over the jobs, in µs: where this machine's two cores went.
struct cpu_split {
  double redis = 0, daemons = 0, submitter = 0, wall = 0;
  cpu_split operator-(const cpu_split& o) const { return {redis - o.redis, daemons - o.daemons, submitter - o.submitter, wall - o.wall}; }
};

struct profile {
  std::string title;
  double jobs = 0;
  cpu_split cpu;
  std::map<std::string, std::pair<double, double>> commands;  // calls, usec over the run
};

// --- R1: throughput ---------------------------------------------------------

struct r1_settings {
  int jobs = 20'000, warmup = 1'000;
  std::size_t batch = 512, window = 4'096;
};

// Jobs/s through submit_all: batches of `batch`, at most `window` unanswered at once.
double pipelined(pc::remote_queue& q, int n, const r1_settings& s) {
  const std::vector<pc::remote_call> calls(s.batch, pc::remote_call{"hello", hello_args, {}});
  std::deque<pc::remote_job> in_flight;
  int submitted = 0, answered = 0;
  const auto t0 = clock_type::now();
  while (answered < n) {
    while (submitted < n && in_flight.size() + s.batch <= s.window) {
      const auto k = std::min<std::size_t>(s.batch, static_cast<std::size_t>(n - submitted));
      for (auto& j : q.submit_all(std::span(calls.data(), k))) {
        if (!j) throw std::runtime_error("R1: the queue answered busy");
        in_flight.push_back(std::move(*j));
      }
      submitted += static_cast<int>(k);
    }
    auto& oldest = in_flight.front();
    if (!oldest.wait_for(30s)) throw std::runtime_error("R1: no answer in 30 s for job " + oldest.id());
    check(is_hello(oldest.result()), "R1 answer " + oldest.answer());
    in_flight.pop_front();
    ++answered;
  }
  return n / std::chrono::duration<double>(clock_type::now() - t0).count();
}

// The same through `parallelcode map --queue`: n lines in, n answers out, in order.
double through_cli(const paths& p, const temp_dir& dir, const std::string& url, const std::string& queue, int n) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) fail_errno("pipe");
  const auto t0 = clock_type::now();
  process cli({p.cli, "map", "--queue", url, "--queue-name", queue, "hello"}, dir.path() / "cli-map.log", in[0], out[1]);
  ::close(in[0]);
  ::close(out[1]);
  std::thread writer([fd = in[1], n] {
    const std::string line = hello_args + "\n";
    std::string all;
    for (int i = 0; i < n; ++i) all += line;
    for (std::size_t off = 0; off < all.size();) {
      const ssize_t w = ::write(fd, all.data() + off, all.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) break;
      off += static_cast<std::size_t>(w);
    }
    ::close(fd);
  });
  std::string pending;
  int lines = 0;
  char buf[65536];
  for (ssize_t k; (k = ::read(out[0], buf, sizeof buf)) != 0;) {
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) break;
    pending.append(buf, static_cast<std::size_t>(k));
    std::size_t from = 0;
    for (std::size_t nl; (nl = pending.find('\n', from)) != std::string::npos; from = nl + 1, ++lines)
      check(is_hello(std::string_view(pending).substr(from, nl - from)), "R1 CLI line " + std::to_string(lines + 1));
    pending.erase(0, from);
  }
  ::close(out[0]);
  writer.join();
  cli.wait_exit(60s);
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  check(WIFEXITED(cli.status()) && WEXITSTATUS(cli.status()) == 0, "R1 CLI exit status: " + tail_of(dir.path() / "cli-map.log"));
  check(lines == n, "R1 CLI answered " + std::to_string(lines) + " lines of " + std::to_string(n));
  return n / s;
}

bool cli_has_queue(const paths& p, const temp_dir& dir) {
  const auto [status, out] = run_capture({p.cli, "map", "--help"}, dir.path() / "help.log");
  return status == 0 && out.find("--queue") != std::string::npos;
}

pc::remote_options queue_named(const std::string& name) {
  pc::remote_options o;
  o.name = name;
  return o;
}

struct context {
  paths p;
  temp_dir& dir;
  redis_server& redis;
  int run = 0;
  std::string queue(const std::string& what) const {
    return "bench-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(run);
  }
};

// run(), with what each party spent on it and Redis's commandstats over it.
template <class F>
profile measured(context& c, fleet& fl, std::string title, int jobs, F&& run) {
  auto split = [&] {
    return cpu_split{c.redis.cpu_us(), fl.cpu_us(), read_stat("/proc/self/stat")->cpu_us,
                     std::chrono::duration<double, std::micro>(clock_type::now().time_since_epoch()).count()};
  };
  c.redis.probe().command({"CONFIG", "RESETSTAT"});
  const auto before = split();
  run();
  const auto used = split() - before;
  return {std::move(title), static_cast<double>(jobs), used, commandstats(c.redis.probe())};
}

void add_r1(context& c, int runs, const r1_settings& s, std::vector<figure>& figs, std::vector<profile>& profiles) {
  const bool cli = cli_has_queue(c.p, c.dir);
  std::vector<figure> f;
  for (int d : {1, 2, 4})
    f.push_back({"R1", "hello jobs/s, submit_all, " + std::to_string(d) + " daemon" + (d > 1 ? "s" : ""), "jobs/s",
                 d == 2 ? ">= 30,000" : "", {}, ""});
  figure via_cli{"R1", "hello jobs/s, map --queue, 2 daemons", "jobs/s", "", {}, ""};
  figure cpu{"R1", "Redis CPU per job, 2 daemons", "us", "(BullMQ ~47)", {}, ""};
  for (int r = 0; r < runs; ++r) {
    for (std::size_t k = 0; k < 3; ++k) {
      const int d = 1 << k;
      c.run = r;
      fleet fl(c.p, c.dir, c.redis, c.queue("r1-" + std::to_string(d)), d);
      pc::remote_queue q(c.redis.url(), queue_named(fl.name()));
      fl.warm(q, s.warmup);
      if (d != 2) {
        f[k].runs.push_back(pipelined(q, s.jobs, s));
      } else {
        auto p = measured(c, fl, "R1, 2 daemons, run " + std::to_string(r + 1), s.jobs,
                          [&] { f[k].runs.push_back(pipelined(q, s.jobs, s)); });
        cpu.runs.push_back(p.cpu.redis / s.jobs);
        if (r == runs / 2) profiles.push_back(std::move(p));
        if (cli) via_cli.runs.push_back(through_cli(c.p, c.dir, c.redis.url(), fl.name(), s.jobs));
      }
      std::fprintf(stderr, "R1 run %d, %d daemon(s): %.0f jobs/s\n", r + 1, d, f[k].runs.back());
    }
  }
  figs.insert(figs.end(), f.begin(), f.end());
  if (cli) figs.push_back(via_cli);
  else std::fprintf(stderr, "R1: `parallelcode map --help` shows no --queue yet: the CLI line is skipped\n");
  cpu.note = "redis-server utime+stime over the jobs (10 ms ticks)";
  figs.push_back(cpu);
}

// --- R2: latency ------------------------------------------------------------

double rank(const std::vector<double>& sorted, double p) {  // nearest rank
  const auto k = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::max<std::size_t>(k, 1) - 1];
}

void add_r2(context& c, int runs, int jobs, int warmup, std::vector<figure>& figs, std::vector<profile>& profiles) {
  for (int d : {1, 2}) {
    const std::string who = std::to_string(d) + " daemon" + (d > 1 ? "s" : "");
    figure p50{"R2", "p50, " + who, "us", d == 1 ? "<= 300" : "", {}, ""}, p90{"R2", "p90, " + who, "us", "", {}, ""},
        p99{"R2", "p99, " + who, "us", "", {}, ""}, mx{"R2", "max, " + who, "us", "", {}, ""};
    for (int r = 0; r < runs; ++r) {
      c.run = r;
      fleet fl(c.p, c.dir, c.redis, c.queue("r2-" + std::to_string(d)), d);
      pc::remote_queue q(c.redis.url(), queue_named(fl.name()));
      fl.warm(q, 0);
      for (int i = 0; i < warmup; ++i) check(is_hello(q.submit("hello", hello_args).result()), "R2 warm-up");
      std::vector<double> us;
      auto p = measured(c, fl, "R2, " + who + ", run " + std::to_string(r + 1), jobs, [&] {
        for (int i = 0; i < jobs; ++i) {
          const auto t0 = clock_type::now();
          const auto answer = q.submit("hello", hello_args).result();
          us.push_back(ms_between(t0, clock_type::now()) * 1000);
          check(is_hello(answer), "R2");
        }
      });
      if (d == 1 && r == runs / 2) profiles.push_back(std::move(p));
      std::sort(us.begin(), us.end());
      p50.runs.push_back(rank(us, 0.50));
      p90.runs.push_back(rank(us, 0.90));
      p99.runs.push_back(rank(us, 0.99));
      mx.runs.push_back(us.back());
      std::fprintf(stderr, "R2 run %d, %s: p50 %.0f us, p99 %.0f us\n", r + 1, who.c_str(), p50.runs.back(), p99.runs.back());
    }
    figs.insert(figs.end(), {p50, p90, p99, mx});
  }
}

// --- R3: redelivery ---------------------------------------------------------

struct holder {
  std::string consumer;
  long long deliveries = 0;
};

// Who holds the queue's one pending job, if anyone.
std::optional<holder> pending_owner(redis_probe& r, const std::string& jobs) {
  const auto p = r.command({"XPENDING", jobs, "daemons", "-", "+", "10"});
  if (p->elements == 0) return std::nullopt;
  const redisReply* e = p->element[0];
  return holder{text(e->element[1]), e->element[3]->integer};
}

void add_r3(context& c, int runs, std::vector<figure>& figs) {
  figure started{"R3", "kill -> other daemon holds the job", "ms", "<= 1,500", {}, "lease 1s; XPENDING polled every ms"};
  figure answered{"R3", "kill -> answer", "ms", "", {}, "the job sleeps 2 s"};
  figure deliveries{"R3", "deliveries seen", "", "2", {}, ""};
  for (int r = 0; r < runs; ++r) {
    c.run = r;
    fleet fl(c.p, c.dir, c.redis, c.queue("r3"), 2, {"--lease", "1s"});
    pc::remote_queue q(c.redis.url(), queue_named(fl.name()));
    fl.warm(q, 0);
    auto& probe = c.redis.probe();
    const auto job = q.submit("sleep", R"({"ms":2000})");
    std::optional<holder> first;
    wait_until([&] { return (first = pending_owner(probe, fl.jobs_key())).has_value(); }, 10s, "a daemon to take the job", 1ms);
    const auto taken = clock_type::now();
    auto victim = std::find_if(fl.daemons().begin(), fl.daemons().end(), [&](auto& d) { return d.consumer == first->consumer; });
    if (victim == fl.daemons().end()) throw std::runtime_error("R3: the job is held by " + first->consumer + ", none of ours");
    std::this_thread::sleep_until(taken + 300ms);  // the workload: 300 ms into the job
    const auto killed = clock_type::now();
    victim->proc->signal(SIGKILL);
    std::optional<holder> second;
    wait_until(
        [&] {
          second = pending_owner(probe, fl.jobs_key());
          return second && second->consumer != first->consumer;
        },
        10s, "another daemon to take the job", 1ms);
    const auto moved = clock_type::now();
    if (!job.wait_for(10s)) throw std::runtime_error("R3: no answer 10 s after the redelivery");
    const auto done = clock_type::now();
    check(job.result() == "2000", "R3 answer " + job.answer());
    started.runs.push_back(ms_between(killed, moved));
    answered.runs.push_back(ms_between(killed, done));
    deliveries.runs.push_back(static_cast<double>(second->deliveries));
    std::fprintf(stderr, "R3 run %d: taken over %.0f ms after the kill, answered at %.0f ms, delivery %lld\n", r + 1,
                 started.runs.back(), answered.runs.back(), second->deliveries);
  }
  figs.insert(figs.end(), {started, answered, deliveries});
}

// --- main -------------------------------------------------------------------

void print_profile(const profile& p) {
  const auto per = [&](double us) { return fmt(us / p.jobs); };
  std::printf("\n%s, %s jobs, per job: wall %s us; CPU: redis-server %s us, daemons with their workers %s us, "
              "submitter %s us (10 ms ticks). INFO commandstats (calls inside scripts are counted too, and their "
              "time is also in EVALSHA's):\n\n",
              p.title.c_str(), fmt(p.jobs).c_str(), per(p.cpu.wall).c_str(), per(p.cpu.redis).c_str(),
              per(p.cpu.daemons).c_str(), per(p.cpu.submitter).c_str());
  std::printf("| command | calls/job | us/job | us/call |\n|---|---|---|---|\n");
  std::vector<std::pair<std::string, std::pair<double, double>>> v(p.commands.begin(), p.commands.end());
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.second.second > b.second.second; });
  for (const auto& [name, cu] : v)
    if (name != "config|resetstat")
      std::printf("| %s | %s | %s | %s |\n", name.c_str(), per(cu.first).c_str(), per(cu.second).c_str(),
                  fmt(cu.first > 0 ? cu.second / cu.first : 0).c_str());
}

void write_json(const std::string& path, int runs, const std::vector<figure>& figs, const std::vector<profile>& profiles) {
  std::ofstream out(path);
  out << "{";
  bench::write_figures(out, runs, figs);
  out << ",\"profiles\":[";
  for (std::size_t i = 0; i < profiles.size(); ++i) {
    const auto& p = profiles[i];
    out << (i ? "," : "") << "{\"title\":\"" << p.title << "\",\"jobs\":" << p.jobs << ",\"per_job_us\":{\"wall\":"
        << p.cpu.wall / p.jobs << ",\"redis_cpu\":" << p.cpu.redis / p.jobs << ",\"daemons_cpu\":" << p.cpu.daemons / p.jobs
        << ",\"submitter_cpu\":" << p.cpu.submitter / p.jobs << "},\"commandstats_per_job\":{";
    bool first = true;
    for (const auto& [name, cu] : p.commands) {
      out << (first ? "" : ",") << "\"" << name << "\":{\"calls\":" << cu.first / p.jobs << ",\"usec\":" << cu.second / p.jobs << "}";
      first = false;
    }
    out << "}}";
  }
  out << "]}\n";
}

struct options {
  std::string which = "all", json_path;
  int runs = 3;
  paths p;
  r1_settings r1;
  bool want(const std::string& w) const { return which == "all" || which == w; }
};

options parse(int argc, char** argv) {
  options o;
  o.p.daemon = next_to_program(argv[0], "../supervisor/daemon/parallelcode-supervisor");
  o.p.cli = next_to_program(argv[0], "../supervisor/cli/parallelcode");
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool more = i + 1 < argc;
    if (a == "--runs" && more) o.runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--json" && more) o.json_path = argv[++i];
    else if (a == "--redis-server" && more) o.p.redis_server = argv[++i];
    else if (a == "--daemon" && more) o.p.daemon = argv[++i];
    else if (a == "--cli" && more) o.p.cli = argv[++i];
    else if (a == "--prefetch" && more) o.p.daemon_flags = {"--prefetch", argv[++i]};
    else if (a == "--jobs" && more) o.r1.jobs = std::max(1, std::atoi(argv[++i]));
    else if (a == "all" || a == "r1" || a == "r2" || a == "r3") o.which = a;
    else {
      std::fprintf(stderr,
                   "usage: remote_workloads [all|r1|r2|r3] [--runs N] [--json FILE] [--redis-server PATH] "
                   "[--daemon PATH] [--cli PATH] [--prefetch N (the daemons')] [--jobs N (R1)]\n");
      std::exit(2);
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  ::signal(SIGPIPE, SIG_IGN);  // a CLI that died under its input is reported, not fatal
  try {
    temp_dir dir("pc-remote-bench");
    redis_server redis(o.p.redis_server, dir.path());
    context c{o.p, dir, redis};
    std::vector<figure> figs;
    std::vector<profile> profiles;
    if (o.want("r1")) add_r1(c, o.runs, o.r1, figs, profiles);
    if (o.want("r2")) add_r2(c, o.runs, 2'000, 200, figs, profiles);
    if (o.want("r3")) add_r3(c, o.runs, figs);
    bench::print_table(figs, "note");
    for (const auto& p : profiles) print_profile(p);
    if (!o.json_path.empty()) write_json(o.json_path, o.runs, figs, profiles);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "remote_workloads: %s\n", e.what());
    return 1;
  }
  return 0;
}
