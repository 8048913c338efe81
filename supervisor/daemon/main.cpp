// parallelcode-supervisor: a pool of named tasks served on a Unix socket. This room
// holds the daemon: its options and start-up here, its socket loop in server.cpp, its
// built-in tasks in builtin_tasks.cpp; the protocol itself is supervisor/control's.

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <parallelcode/parallelcode.hpp>

#include "protocol.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "server.hpp"
#include "systemd.hpp"
#include "units.hpp"
#ifdef PARALLELCODE_HAVE_REMOTE
#include "consumer.hpp"
#endif
#ifdef PARALLELCODE_HAVE_METRICS
#include "metrics_endpoint.hpp"
#endif

namespace {

namespace pc = parallelcode;
using pc::control::log;
using pc::control::log_level;
using pc::control::owned_fd;

struct settings {
  unsigned workers = pc::default_workers();
  unsigned max_workers = 0;
  unsigned concurrency = 1;
  std::string tick = "0";
  std::string socket = pc::control::default_socket_path();
  std::string socket_group;
  std::string socket_mode = "0600";
  std::vector<std::string> plugins;
  std::string pidfile;
  std::string job_timeout = "0";
  unsigned max_jobs_per_worker = 0;
  std::string max_worker_rss = "0";
  std::string kill_grace = "500ms";
  std::string drain_timeout = "30s";
  std::string ring_bytes = "1M";
  std::string max_payload = "4G";
  std::string max_frame = "16M";
  unsigned max_clients = 1024;
  std::size_t max_jobs = 100'000;
  std::string max_request_bytes = "1G";
  std::string idle_timeout = "60s";
  std::string batch_below = "50us";
  std::string queue;
  std::string queue_name = "default";
  std::string queue_password_file;
  std::string lease = "30s";
  unsigned max_deliveries = 5;
  std::optional<std::size_t> prefetch;  // unset: workers x concurrency
  std::string log_level = "info";
  std::string log_format = "text";
  std::string metrics;
};

[[noreturn]] void die(const std::string& why, int status = 1) {
  log(log_level::error, "%s", why.c_str());
  std::exit(status);
}

constexpr int exit_usage = 2;
constexpr int exit_no_queue = 3;  // Redis refused our credentials

// The queue's password: from a file or the environment, never argv (ps shows it).
std::string queue_password(const settings& s) {
  if (!s.queue_password_file.empty()) {
    try {
      return pc::control::read_password_file(s.queue_password_file);
    } catch (const std::invalid_argument& e) {
      die(std::string("--queue-password-file: ") + e.what(), exit_usage);
    }
  }
  const char* p = std::getenv("PARALLELCODE_QUEUE_PASSWORD");
  return p ? p : "";
}

// A file the daemon made, by device and inode: at exit it removes the path only
// if that is still its own file, never one that replaced it.
struct file_identity {
  dev_t dev = 0;
  ino_t ino = 0;
  bool known = false;

  static file_identity of(const std::string& path) {
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) return {};
    return {st.st_dev, st.st_ino, true};
  }
  // Unlinks path if it is still this file.
  void remove(const std::string& path) const {
    if (!known || path.empty()) return;
    const file_identity now = of(path);
    if (now.known && now.dev == dev && now.ino == ino) ::unlink(path.c_str());
    else log(log_level::warning, "%s is no longer the file this daemon made: leaving it", path.c_str());
  }
};

// The control socket: born 0600 and ours alone, then given its group and mode. A lock
// beside it keeps a second daemon off the same path; holding it, a socket file found there is stale.
owned_fd listen_on(const std::string& path, owned_fd& lock, file_identity& bound_socket, std::optional<gid_t> group,
                   mode_t mode) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) die("--socket " + path + ": longer than a Unix socket path may be");
  lock.reset(::open((path + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock) die("cannot open " + path + ".lock: " + std::strerror(errno));
  struct stat st{};
  if (::fstat(lock.get(), &st) != 0 || st.st_uid != ::geteuid())
    die(path + ".lock belongs to another user: refusing to start");
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
    die("another parallelcode-supervisor is serving " + path + ": refusing to start a second one");
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) die("--socket " + path + " exists and is not a socket: refusing to replace it");
    if (st.st_uid != ::geteuid()) die("--socket " + path + " belongs to another user: refusing to start");
    ::unlink(path.c_str());  // a stale socket: its daemon is gone, we hold the lock
  }
  owned_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  const mode_t old_umask = ::umask(0177);  // born 0600: never a moment with wider access
  const int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old_umask);
  if (bound != 0) die("cannot bind " + path + ": " + std::strerror(errno));
  bound_socket = file_identity::of(path);
  try {
    pc::control::share_socket(path, group, mode);
  } catch (const std::exception& e) {
    bound_socket.remove(path);
    die(std::string("--socket-group/--socket-mode: ") + e.what());
  }
  if (::listen(fd.get(), 128) != 0) {
    bound_socket.remove(path);
    die("cannot listen on " + path + ": " + std::strerror(errno));
  }
  return fd;
}

// Written to a fresh file (mkostemp: O_CREAT|O_EXCL, so a planted symlink is never
// followed), then renamed over the path, which replaces a link rather than its target.
file_identity write_pidfile(const std::string& path) {
  if (path.empty()) return {};
  std::string temp = path + ".XXXXXX";
  owned_fd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd) throw std::runtime_error("cannot write --pidfile " + path + ": " + std::strerror(errno));
  const std::string text = std::to_string(::getpid()) + "\n";
  const bool written = ::fchmod(fd.get(), 0644) == 0 &&
                       ::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int error = errno;
  fd.reset();
  if (!written || std::rename(temp.c_str(), path.c_str()) != 0) {
    const int why = written ? errno : error;
    ::unlink(temp.c_str());
    throw std::runtime_error("cannot write --pidfile " + path + ": " + std::strerror(why));
  }
  return file_identity::of(path);
}

void load_plugins(const std::vector<std::string>& paths) {
  for (const auto& path : paths) {
    // Before any fork: every worker has the plugin's tasks.
    if (!::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) die("--plugin " + path + ": " + ::dlerror());
    log(log_level::info, "loaded plugin %s", path.c_str());
  }
  const auto conflicts = pc::task_conflicts();
  if (!conflicts.empty()) {
    std::string names;
    for (const auto& n : conflicts) names += (names.empty() ? "" : ", ") + n;
    die("tasks registered twice: " + names);
  }
}

// Workers the pool ended itself (recycled, or stopped at a stop, a free or a shrink) are
// no news: the signal it used to end them is not said, only a death or a timeout's.
void log_worker_events(pc::pool& pool) {
  pool.on_worker_spawn([](const pc::worker_info& w) {
    log(log_level::info, {{"worker", w.id}, {"pid", w.pid}}, "worker %d started: pid %d", w.id, static_cast<int>(w.pid));
  });
  pool.on_worker_exit([](const pc::worker_exit& e) {
    const double uptime = std::chrono::duration<double>(e.uptime).count();
    const std::initializer_list<pc::control::log_field> fields{{"worker", e.worker.id}, {"pid", e.pid}};
    if (e.reason == pc::exit_reason::stopped || e.reason == pc::exit_reason::recycled) {
      log(log_level::info, fields, "worker %d (pid %d) %s after %.1f s", e.worker.id, static_cast<int>(e.pid),
          e.reason == pc::exit_reason::stopped ? "stopped" : "recycled", uptime);
      return;
    }
    const std::string how = pc::describe_exit(e.signal, e.exit_status);
    const char* why = e.reason == pc::exit_reason::timed_out ? "a job ran past its timeout" : "respawning";
    log(log_level::warning, fields, "worker %d (pid %d) %s after %.1f s: %s", e.worker.id, static_cast<int>(e.pid),
        how.c_str(), uptime, why);
  });
  pool.on_crash_loop([](const pc::worker_info& w, unsigned deaths, std::chrono::milliseconds delay) {
    log(log_level::error, {{"worker", w.id}}, "worker %d keeps dying at start-up (%u in a row): next try in %lld ms",
        w.id, deaths, static_cast<long long>(delay.count()));
  });
  pool.on_fork_server_lost([](pid_t pid) {
    log(log_level::error, {{"pid", pid}}, "the fork server (pid %d) died, and its workers with it: starting a new one",
        static_cast<int>(pid));
  });
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  CLI::App app{"parallelcode-supervisor: runs a pool of worker processes that serve named tasks\n"
               "(built in: hello, echo, sleep, fnv; more from --plugin) to clients of a Unix socket.\n"
               "Signals: TERM drains then exits, INT and QUIT stop at once, HUP replaces every worker\n"
               "one by one, TTIN and TTOU add and remove a worker. Durations take a unit (250ms, 1.5s,\n"
               "1m30s); sizes are bytes or end in K, M, G (KiB, MiB, GiB) or kB, MB, GB (powers of 1000)."};
  app.set_version_flag("--version", "parallelcode-supervisor " PARALLELCODE_VERSION_STRING);
  app.add_option("--workers", s.workers, "Worker processes")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--max-workers", s.max_workers, "Most workers TTIN or 'parallelcode scale' may reach (default: 4 x --workers)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--concurrency", s.concurrency, "Jobs one worker runs at once")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--tick", s.tick, "0: dispatch jobs at once; else at most one batch per tick")->capture_default_str();
  app.add_option("--socket", s.socket, "Control socket path (ignored when systemd passes one: LISTEN_FDS)")
      ->capture_default_str()
      ->envname("PARALLELCODE_SOCKET");
  app.add_option("--socket-group", s.socket_group, "Give the socket to this group (name or number); its members may use it with --socket-mode 0660");
  app.add_option("--socket-mode", s.socket_mode, "The socket's mode, octal (0660: the owner and --socket-group; never anything for others)")->capture_default_str();
  app.set_config("--config", "", "Read options from this TOML or INI file (keys: the long option names)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key must not be ignored
  app.add_option("--plugin", s.plugins, "Shared library of PARALLELCODE_TASKs to load (repeatable)");
  app.add_option("--pidfile", s.pidfile, "Write the daemon's pid here");
  app.add_option("--job-timeout", s.job_timeout, "Longest a job may run before its worker is killed (0: none)")->capture_default_str();
  app.add_option("--max-jobs-per-worker", s.max_jobs_per_worker, "Replace a worker after this many jobs (0: never)")->capture_default_str();
  app.add_option("--max-worker-rss", s.max_worker_rss, "Replace a worker that grows by more than this (0: never)")->capture_default_str();
  app.add_option("--kill-grace", s.kill_grace, "Between SIGTERM and SIGKILL for a worker the pool ends")->capture_default_str();
  app.add_option("--drain-timeout", s.drain_timeout, "On TERM, how long running jobs may take to finish")->capture_default_str();
  app.add_option("--ring-bytes", s.ring_bytes, "Each worker's two shared-memory rings")->capture_default_str();
  app.add_option("--max-payload", s.max_payload, "Largest encoded job data or result")->capture_default_str();
  app.add_option("--max-frame", s.max_frame, "Largest request a client may send")->capture_default_str();
  app.add_option("--max-clients", s.max_clients, "Clients connected at once (the idlest makes room for a new one)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  app.add_option("--max-jobs", s.max_jobs, "Jobs in flight from all clients together; more are answered busy")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000'000));
  app.add_option("--max-request-bytes", s.max_request_bytes, "Job arguments in flight from all clients together")
      ->capture_default_str();
  app.add_option("--idle-timeout", s.idle_timeout, "Close a client silent this long with no job in flight")
      ->capture_default_str();
  app.add_option("--batch-below", s.batch_below,
                 "Send a task's plain submits to the pool many to a job while its recent runs average under this (0: never)")
      ->capture_default_str();
  app.add_option("--queue", s.queue, "Also serve the remote queue at this Redis URL: redis://[user@]host[:port][/db] or unix:///path?db=N");
  app.add_option("--queue-name", s.queue_name, "The queue's name: its keys are pc:{NAME}:...")->capture_default_str();
  app.add_option("--queue-password-file", s.queue_password_file, "Read Redis's password from this file (else PARALLELCODE_QUEUE_PASSWORD)");
  app.add_option("--lease", s.lease, "How long a job stays ours without a renewal (renewed every lease/3)")->capture_default_str();
  app.add_option("--max-deliveries", s.max_deliveries, "A job delivered more often than this goes to the dead-letter stream")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--prefetch", s.prefetch, "Queue jobs taken ahead of free workers, beyond those running (default: workers x concurrency)")
      ->check(CLI::Range(0, 100'000));
  app.add_option("--log-level", s.log_level, "Log this level and the more severe ones")
      ->capture_default_str()
      ->check(CLI::IsMember({"error", "warning", "info", "debug"}));
  app.add_option("--log-format", s.log_format, "text, or json: one object a line")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--metrics", s.metrics, "Serve Prometheus metrics on http://ADDR:PORT/metrics ([ADDR:]PORT; ADDR defaults to 127.0.0.1)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is no error; bad usage exits 2
  }
  pc::control::configure_log(pc::control::parse_log_level(s.log_level), pc::control::parse_log_format(s.log_format));
  // Taken from the environment (and cleared, so no worker inherits them) before
  // name_processes copies it: a copy unsetenv dropped would be leaked.
  const pc::control::systemd_notifier systemd;
  owned_fd listener;
  try {
    listener = pc::control::inherited_listener();
  } catch (const std::exception& e) {
    die(e.what());
  }
  pc::name_processes(argc, argv);  // after CLI11 copied what it needs
#ifndef PARALLELCODE_HAVE_REMOTE
  if (!s.queue.empty()) die("--queue: this parallelcode-supervisor was built without Redis support (hiredis)", exit_usage);
#endif
  std::optional<pc::control::metrics_address> metrics_at;
  try {
    if (!s.metrics.empty()) metrics_at = pc::control::parse_metrics_address(s.metrics);
  } catch (const std::invalid_argument& e) {
    die(e.what(), exit_usage);
  }
#ifndef PARALLELCODE_HAVE_METRICS
  if (metrics_at) die("--metrics: this parallelcode-supervisor was built without cpp-httplib", exit_usage);
#endif
  if (pc::control::url_has_password(s.queue))
    log(log_level::warning, "--queue: the URL holds a password, which ps shows to every user: use PARALLELCODE_QUEUE_PASSWORD or --queue-password-file");

  pc::options opts;
  pc::control::server_settings serving{};
  std::optional<gid_t> socket_group;
  mode_t socket_mode = 0600;
  try {
    if (!s.socket_group.empty()) socket_group = pc::control::parse_group(s.socket_group);
    socket_mode = pc::control::parse_socket_mode(s.socket_mode);
    opts.workers = s.workers;
    opts.max_workers = s.max_workers ? s.max_workers : std::min(4096u, 4 * s.workers);
    opts.concurrency = s.concurrency;
    opts.tick = pc::control::parse_duration(s.tick);
    opts.ring_bytes = pc::control::parse_size(s.ring_bytes);
    opts.max_payload = pc::control::parse_size(s.max_payload);
    opts.job_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(pc::control::parse_duration(s.job_timeout));
    opts.max_jobs_per_worker = s.max_jobs_per_worker;
    opts.max_worker_rss = pc::control::parse_size(s.max_worker_rss);
    opts.kill_grace = std::chrono::duration_cast<std::chrono::milliseconds>(pc::control::parse_duration(s.kill_grace));
    serving.drain_timeout =
        std::chrono::duration_cast<std::chrono::milliseconds>(pc::control::parse_duration(s.drain_timeout));
    serving.max_frame = pc::control::parse_size(s.max_frame);
    serving.max_clients = s.max_clients;
    serving.max_jobs = s.max_jobs;
    serving.max_request_bytes = pc::control::parse_size(s.max_request_bytes);
    serving.idle_timeout = std::chrono::duration_cast<std::chrono::seconds>(pc::control::parse_duration(s.idle_timeout));
    serving.batch_below = pc::control::parse_duration(s.batch_below);
    if (serving.max_frame < 64 || serving.max_frame > 0xffffffffu)
      throw std::invalid_argument("--max-frame must be 64 bytes to 4G - 1");
    if (serving.idle_timeout < std::chrono::seconds(1)) throw std::invalid_argument("--idle-timeout must be 1s or more");
    if (pc::control::parse_duration(s.lease) < std::chrono::milliseconds(100)) throw std::invalid_argument("--lease must be 100ms or more");
    // A client is a file descriptor: there must be enough of them, with room for the
    // pool's own: a pidfd for each worker process (up to 3 a slot while one is
    // replaced), and a few dozen for the daemon, plugins and the pool's thread.
    rlimit files{};
    ::getrlimit(RLIMIT_NOFILE, &files);
    const rlim_t reserve = 32 + 3 * rlim_t{opts.max_workers} + 2;
    if (files.rlim_cur <= reserve)
      throw std::invalid_argument("the file descriptor limit (" + std::to_string(files.rlim_cur) + ") leaves no room for clients: " +
                                  std::to_string(opts.max_workers) + " workers at most need " + std::to_string(reserve) +
                                  "; raise ulimit -n or lower --max-workers");
    const auto room = files.rlim_cur - reserve;
    if (serving.max_clients > room) {
      serving.max_clients = static_cast<unsigned>(room);
      log(log_level::warning, "--max-clients lowered to %u: the file descriptor limit is %llu", serving.max_clients,
          static_cast<unsigned long long>(files.rlim_cur));
    }
  } catch (const std::invalid_argument& e) {
    die(e.what(), exit_usage);
  }

  load_plugins(s.plugins);

  // The signals the daemon owns arrive through a signalfd; blocked before any
  // thread starts, so none of them lands anywhere else.
  sigset_t owned;
  sigemptyset(&owned);
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGCHLD}) sigaddset(&owned, sig);
  ::sigprocmask(SIG_BLOCK, &owned, nullptr);
  owned_fd signals(::signalfd(-1, &owned, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!signals) die(std::string("signalfd: ") + std::strerror(errno));

  owned_fd lock;
  file_identity socket_file;
  // systemd's socket is systemd's: it keeps the path listening across our restarts, so
  // we neither unlink it nor take the lock (which guards binding, and nobody binds here).
  if (listener) {
    s.socket = pc::control::bound_path(listener);
    log(log_level::info, "serving the socket systemd passed: %s", s.socket.empty() ? "(no path)" : s.socket.c_str());
  } else {
    listener = listen_on(s.socket, lock, socket_file, socket_group, socket_mode);
  }
  serving.group = pc::control::sharing_group(s.socket);

  pc::pool pool;
  log_worker_events(pool);
  try {
    pool.start(opts);
  } catch (const std::exception& e) {
    socket_file.remove(s.socket);
    die(std::string("cannot start the pool: ") + e.what());
  }
  // Only now: the workers were forked from the state before, with SIGPIPE as tasks expect it.
  ::signal(SIGPIPE, SIG_IGN);
  file_identity pid_file;
  try {
    pid_file = write_pidfile(s.pidfile);
  } catch (const std::exception& e) {
    socket_file.remove(s.socket);
    die(e.what());
  }

  int status;
  try {
    pc::control::server server(pool, std::move(listener), std::move(signals), serving, systemd);
#ifdef PARALLELCODE_HAVE_REMOTE
    std::unique_ptr<pc::remote::consumer> queue;
    if (!s.queue.empty()) {
      try {
        queue = std::make_unique<pc::remote::consumer>(pool, pc::remote::consumer_settings{
            .url = s.queue,
            .password = queue_password(s),
            .queue = s.queue_name,
            .lease = std::chrono::duration_cast<std::chrono::milliseconds>(pc::control::parse_duration(s.lease)),
            .max_deliveries = s.max_deliveries,
            .slots = std::size_t{opts.workers} * opts.concurrency,
            .prefetch = s.prefetch.value_or(std::size_t{opts.workers} * opts.concurrency),
            .log = [](pc::remote::severity level, const std::string& line) {
              log(level == pc::remote::severity::warning ? log_level::warning : log_level::info, "%s", line.c_str());
            },
            .on_idle = [&server] { server.wake(); },
        });
      } catch (const pc::queue_error& e) {
        socket_file.remove(s.socket);
        pid_file.remove(s.pidfile);
        die(std::string("--queue: ") + e.what(), exit_no_queue);
      } catch (const std::invalid_argument& e) {
        socket_file.remove(s.socket);
        pid_file.remove(s.pidfile);
        die(std::string("--queue: ") + e.what(), exit_usage);
      }
      server.serve_outside_jobs({
          .stop_taking = [&queue] { queue->stop_taking(); },
          .held = [&queue] { return queue->held(); },
          .status = [&queue] { return queue->status(); },
      });
    }
#endif
#ifdef PARALLELCODE_HAVE_METRICS
    std::unique_ptr<pc::control::metrics_endpoint> metrics;  // before the server goes: it reads the server
    if (metrics_at) {
      metrics = std::make_unique<pc::control::metrics_endpoint>(*metrics_at, [&server] { return server.metrics_text(); });
      log(log_level::info, "serving metrics on http://%s/metrics", metrics->address().c_str());
    }
#endif
    log(log_level::info, "ready: %u workers, fork server pid %d, socket %s", opts.workers, static_cast<int>(pool.stats().fork_server),
        s.socket.c_str());
    status = server.run();
  } catch (const std::system_error& e) {
    socket_file.remove(s.socket);
    pid_file.remove(s.pidfile);
    die(std::string("cannot serve: ") + e.what());
  }
  socket_file.remove(s.socket);  // the lock file stays: removing it would let two daemons race for two locks
  pid_file.remove(s.pidfile);
  log(log_level::info, "stopped");
  return status;
}
