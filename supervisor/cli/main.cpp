// parallelcode: feeds and operates a running parallelcode-supervisor, or a Redis queue
// that daemons consume (--queue, PARALLELCODE_QUEUE). This room holds the CLI alone: it
// speaks to the daemon through supervisor/control, to the queue through
// parallelcode-remote (remote_commands.cpp), never lib/.
//
// Exit status: 0 done; 1 a job failed (map: any line failed, a dead-lettered line or
// one past its deadline too); 2 the request was refused (an unknown task, a pid that
// is not a worker, bad arguments, --queue in a build without Redis support); 3 no
// daemon to talk to, or Redis cannot be reached or refuses the credentials; 4 the job's
// deadline passed before a daemon took it; 5 the job was dead-lettered.

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <parallelcode/version.hpp>

#include "output.hpp"
#include "protocol.hpp"
#include "remote_commands.hpp"
#include "requests.hpp"
#include "socket.hpp"

namespace {

namespace ctl = parallelcode::control;

namespace cli = parallelcode::cli;

// The daemon is gone or spoke nonsense: nothing this command can do.
struct no_daemon : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class connection {
 public:
  explicit connection(const std::string& path) : fd_(connect(path)) {
    // Whoever serves this socket hears our jobs' arguments: only we, root, or an owner
    // who shared the socket with a group of ours may.
    const auto uid = ctl::peer_uid(fd_);
    if (!uid || (*uid != ::getuid() && *uid != 0 && !shared_with_us(path, *uid)))
      throw no_daemon(path + " is served by uid " + std::to_string(uid.value_or(0)) +
                      ", neither you nor root, and not shared with a group of yours: refusing to use it");
  }

  void queue(std::string_view body) { ctl::append_frame(out_, body); }
  bool sending() const { return !out_.empty(); }

  // Sends what is queued and reads what has come, waiting until either moves.
  // Returns the complete response bodies received.
  std::vector<std::string> exchange() {
    const bool send_more = !out_.empty() && !write_closed_;
    pollfd p{fd_.get(), static_cast<short>(POLLIN | (send_more ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) throw no_daemon(std::string("poll: ") + std::strerror(errno));
    if (send_more && (p.revents & (POLLOUT | POLLERR))) {
      const ssize_t n = ::send(fd_.get(), out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      // It stopped reading us: what it said before may still wait to be read.
      if (n < 0 && errno != EAGAIN && errno != EINTR) write_closed_ = true;
      if (n > 0) out_.erase(0, static_cast<std::size_t>(n));
    }
    std::vector<std::string> bodies;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char chunk[65536];
      const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (in_.size() >= 4) throw no_daemon("the daemon closed the connection in the middle of an answer");
        throw no_daemon("the daemon closed the connection");
      }
      if (n > 0) in_.append(chunk, static_cast<std::size_t>(n));
      std::size_t used = 0;  // erased once, after every whole frame: a read holds hundreds
      for (;;) {
        const auto cut = ctl::cut_frame(std::string_view(in_).substr(used), 0xffffffff);
        if (cut.kind == ctl::frame_cut::partial) break;
        if (cut.kind == ctl::frame_cut::bad_length) throw no_daemon("the daemon sent an empty frame");
        bodies.push_back(in_.substr(used + 4, cut.length));
        used += 4 + std::size_t{cut.length};
      }
      in_.erase(0, used);
    }
    return bodies;
  }

  // One request, its one response; returns the response's text.
  std::string ask(std::string_view body, rapidjson::Document& response) {
    queue(body);
    for (;;)
      for (auto& b : exchange()) {
        if (auto bad = ctl::parse(b, response)) throw no_daemon("the daemon answered something that is not JSON: " + *bad);
        return std::move(b);
      }
  }

 private:
  // The socket file is the server's, gives its group read and write, and the group is
  // ours: only a member of that group could have given it that group (chgrp needs it).
  static bool shared_with_us(const std::string& path, uid_t server) {
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != server) return false;
    if ((st.st_mode & 0060) != 0060) return false;
    if (st.st_gid == ::getegid()) return true;
    std::vector<gid_t> groups(static_cast<std::size_t>(std::max(::getgroups(0, nullptr), 0)));
    const int n = ::getgroups(static_cast<int>(groups.size()), groups.data());
    return n > 0 && std::find(groups.begin(), groups.begin() + n, st.st_gid) != groups.begin() + n;
  }

  static ctl::owned_fd connect(const std::string& path) {
    try {
      return ctl::connect_to(path);
    } catch (const std::system_error& e) {
      throw no_daemon("cannot connect to " + path + " (" + e.code().message() +
                      "): is parallelcode-supervisor running there?");
    } catch (const std::invalid_argument& e) {
      throw no_daemon(e.what());
    }
  }

  ctl::owned_fd fd_;
  bool write_closed_ = false;
  std::string out_;
  std::string in_;
};

std::string submit_request(const std::string& task, const std::string& args, std::optional<std::int64_t> id,
                           const cli::job_flags& flags, bool with_worker = false) {
  ctl::submit_request r{.id = id, .task = task, .args = args, .with_worker = with_worker};
  if (!flags.timeout.empty()) r.timeout = cli::milliseconds_of(flags.timeout);
  if (flags.retries) r.retries = flags.retries;
  return ctl::encode(r);
}

int submit(connection& conn, const std::string& task, const std::string& args, const cli::job_flags& flags) {
  if (!cli::check_arguments(args)) return cli::exit_refused;
  rapidjson::Document response;
  const std::string body = conn.ask(submit_request(task, args, std::nullopt, flags), response);
  return cli::print_answer(body, response, flags.raw);
}

// One job per input record, at most `window` in flight, reading input as it goes;
// answers in input order (or as they come). A line the daemon answers `busy` waits
// until another job ends (or a moment, if none is out) and is sent again.
int map(connection& conn, const std::string& task, const cli::job_flags& flags, const cli::map_settings& how,
        std::size_t window) {
  cli::ordered_output out(how);
  cli::map_input in(out, how);
  if (in.total()) out.expect(*in.total());
  cli::job_log log(how.joblog);
  std::map<std::size_t, std::string> flying;                // by line: its arguments, to send again if busy
  std::deque<std::pair<std::size_t, std::string>> refused;  // answered busy: sent again first
  auto retry_delay = std::chrono::milliseconds(1);
  bool halting = false;
  const bool fast = !flags.raw && !log;  // most answers are read without a document (nothing in them is needed)
  for (;;) {
    while (!halting && flying.size() < window) {
      std::optional<std::pair<std::size_t, std::string>> line;
      if (!refused.empty()) {
        line = std::move(refused.front());
        refused.pop_front();
      } else {
        line = in.next();
      }
      if (!line) break;
      conn.queue(submit_request(task, line->second, static_cast<std::int64_t>(line->first), flags, bool(log)));
      log.sent(line->first);
      flying.emplace(line->first, std::move(line->second));
    }
    if (flying.empty() && (halting || (refused.empty() && in.done()))) break;
    if (flying.empty()) {
      std::this_thread::sleep_for(retry_delay);  // nothing out to wait on: the daemon was full of others' jobs
      retry_delay = std::min(retry_delay * 2, std::chrono::milliseconds(100));
      continue;
    }
    for (auto& body : conn.exchange()) {
      if (const auto plain = fast ? ctl::plain_result(body) : std::nullopt; plain && flying.erase(plain->id)) {
        retry_delay = std::chrono::milliseconds(1);
        out.add(plain->id, cli::compact(plain->result), false);
        continue;
      }
      rapidjson::Document response;
      if (auto bad = ctl::parse(body, response)) throw no_daemon("the daemon answered something that is not JSON: " + *bad);
      if (!response.IsObject() || !response.HasMember("id") || !response["id"].IsUint64() ||
          !flying.contains(static_cast<std::size_t>(response["id"].GetUint64()))) {
        return cli::report_error(response);  // about the connection itself, not one line
      }
      const auto line = static_cast<std::size_t>(response["id"].GetUint64());
      auto sent = flying.extract(line);
      if (cli::error_type(response) == "busy") {
        refused.emplace_back(line, std::move(sent.mapped()));
        continue;
      }
      retry_delay = std::chrono::milliseconds(1);
      log.answered(line, response);
      auto [text, failed] = cli::map_line(body, response, flags.raw);
      out.add(line, std::move(text), failed);
    }
    out.running(flying.size() + refused.size());
    if (how.halt.at != cli::halt_policy::when::never && out.failed() >= how.halt.failures) {
      halting = true;
      refused.clear();
      if (how.halt.at == cli::halt_policy::when::now) break;  // the jobs out are cancelled when we hang up
    }
  }
  const int status = out.finish();
  if (halting) {
    std::cerr << "parallelcode: --halt: " << out.failed() << " lines failed, stopped\n";
    return cli::exit_failed;
  }
  return status;
}

std::string size_text(std::uint64_t bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1fM", static_cast<double>(bytes) / (1 << 20));
  return s;
}

// The daemon's metrics in Prometheus's text format, for node_exporter's textfile collector.
int prometheus(connection& conn) {
  rapidjson::Document r;
  conn.ask(ctl::encode(ctl::metrics_request{}), r);
  if (!cli::ok(r)) return cli::report_error(r);
  if (!r.HasMember("text") || !r["text"].IsString()) throw no_daemon("the daemon's metrics answer has no text");
  std::cout.write(r["text"].GetString(), r["text"].GetStringLength());
  return 0;
}

int status(connection& conn, bool json) {
  rapidjson::Document r;
  conn.ask(ctl::encode(ctl::status_request{}), r);
  if (!cli::ok(r)) return cli::report_error(r);
  if (json) {
    r.RemoveMember("ok");
    std::cout << ctl::to_text(r) << "\n";
    return 0;
  }
  std::printf("supervisor %lld, fork server %lld, %lld queued, %lld completed, %lld failed%s\n",
              static_cast<long long>(r["supervisor"].GetInt64()), static_cast<long long>(r["fork_server"].GetInt64()),
              static_cast<long long>(r["queued"].GetInt64()), static_cast<long long>(r["completed"].GetInt64()),
              static_cast<long long>(r["failed"].GetInt64()), r["stopping"].GetBool() ? ", stopping" : "");
  if (r.HasMember("queue") && r["queue"].IsObject()) {
    const auto& q = r["queue"];
    auto n = [&](const char* k) { return static_cast<unsigned long long>(q[k].GetUint64()); };
    std::printf("queue %s at %s as %s, %s: %llu held, %llu completed, %llu renewals, %llu reclaims, %llu dead-lettered, "
                "%llu discarded\n",
                q["name"].GetString(), q["url"].GetString(), q["consumer"].GetString(),
                q["connected"].GetBool() ? "connected" : "NOT connected", n("held"), n("completed"), n("renewals"),
                n("reclaims"), n("dead_lettered"), n("discarded"));
  }
  std::printf("%4s %8s %-9s %7s %9s %8s %7s %8s\n", "id", "pid", "state", "running", "done", "respawns", "uptime", "rss");
  std::vector<const rapidjson::Value*> by_id;
  for (const auto& w : r["workers"].GetArray()) by_id.push_back(&w);
  std::sort(by_id.begin(), by_id.end(), [](auto* a, auto* b) { return (*a)["id"].GetInt() < (*b)["id"].GetInt(); });
  for (const auto* worker : by_id) {
    const auto& w = *worker;
    std::printf("%4d %8d %-9s %7u %9llu %8u %7s %8s\n", w["id"].GetInt(), w["pid"].GetInt(), w["state"].GetString(),
                w["running"].GetUint(), static_cast<unsigned long long>(w["done"].GetUint64()), w["respawns"].GetUint(),
                cli::duration_text(w["uptime_ms"].GetInt64()).c_str(), size_text(w["rss"].GetUint64()).c_str());
  }
  return 0;
}

int simple(connection& conn, const std::string& request) {
  rapidjson::Document r;
  conn.ask(request, r);
  return cli::ok(r) ? 0 : cli::report_error(r);
}

int list_tasks(connection& conn, bool json) {
  rapidjson::Document r;
  conn.ask(ctl::encode(ctl::tasks_request{}), r);
  if (!cli::ok(r)) return cli::report_error(r);
  if (json) {
    std::cout << ctl::to_text(r["tasks"]) << "\n";
    return 0;
  }
  for (const auto& t : r["tasks"].GetArray())
    std::printf("%-20s %s -> %s\n", t["name"].GetString(), cli::schema_text(t["argument_schema"]).c_str(),
                cli::schema_text(t["result_schema"]).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"parallelcode: feeds and operates a running parallelcode-supervisor, or a Redis queue that daemons consume"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "parallelcode " PARALLELCODE_VERSION_STRING);
  std::string socket = ctl::default_socket_path();
  app.add_option("--socket", socket, "The daemon's control socket")->capture_default_str()->envname("PARALLELCODE_SOCKET");
  app.set_config("--config", "", "Read options from this TOML or INI file (keys: the long option names; [submit], [map], ... for a verb's)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key must not be ignored

  std::string task, args = "null", dead_id;
  cli::job_flags flags;
  cli::queue_target target;
  bool json = false, now = false, wait = false;
  cli::map_settings how;
  std::string halt = "never";
  std::size_t window = 256, count = 100;
  std::int64_t pid = 0;
  unsigned workers = 0;
  auto add_queue_options = [&](CLI::App* cmd) {
    auto* url = cmd->add_option("--queue", target.url,
                                "Go through this Redis queue instead of the socket: redis://[user@]host[:port][/db] "
                                "or unix:///path/redis.sock[?db=N]")
                    ->envname("PARALLELCODE_QUEUE");
    cmd->add_option("--queue-name", target.name, "The queue's name: its keys are pc:{NAME}:...")
        ->capture_default_str()
        ->needs(url);
    cmd->add_option("--queue-password-file", target.password_file,
                    "Redis's password, from this file (else PARALLELCODE_QUEUE_PASSWORD)")
        ->needs(url);
    return url;
  };

  auto* submit_cmd = app.add_subcommand("submit", "Run one job; print its result as JSON");
  submit_cmd->add_option("task", task, "Task name (see 'parallelcode tasks')")->required();
  submit_cmd->add_option("args", args, "Its arguments, as JSON")->capture_default_str();
  auto* submit_queue = add_queue_options(submit_cmd);
  submit_cmd->add_option("--deadline", flags.deadline, "With --queue: fail the job (exit 4) if no daemon starts it within this")
      ->needs(submit_queue);
  submit_cmd->add_option("--idempotency-key", flags.idempotency_key,
                         "With --queue: a second submit with this key gets the first one's job and answer")
      ->needs(submit_queue);
  auto* map_cmd = app.add_subcommand("map", "One job per line of FILE or standard input (JSON arguments); results in input order");
  map_cmd->add_option("task", task, "Task name")->required();
  map_cmd->add_option("file", how.input, "Read the jobs' arguments from this file ('-': standard input)")->capture_default_str();
  map_cmd->add_flag("--progress", how.progress,
                    "Show done, failed, running, jobs/s and (with a file) a bar and an ETA on standard error (the default on a terminal)");
  map_cmd->add_flag_callback("-0,--null", [&how] { how.delimiter = '\0'; }, "Records end with NUL, not newline (find -print0)");
  map_cmd->add_flag("--unordered", how.unordered, "Print each result as it comes, not in input order");
  map_cmd->add_option("--joblog", how.joblog, "Write a row per job here: line, start, runtime, worker pid, outcome");
  map_cmd->add_option("--halt", halt, "now,fail=N: exit 1 once N lines failed; soon,fail=N: after the jobs out answer")
      ->capture_default_str();
  map_cmd->add_option("--window", window, "Jobs in flight at once")->capture_default_str()->check(CLI::Range(1, 4096));
  add_queue_options(map_cmd);
  for (auto* cmd : {submit_cmd, map_cmd}) {
    cmd->add_option("--timeout", flags.timeout, "Job timeout, with a unit (2s, 500ms)");
    cmd->add_option("--retries", flags.retries, "Run a job again if its worker dies, this many times")
        ->check(CLI::Range(0, 100));
    cmd->add_flag("-r,--raw", flags.raw, "Print string results without quotes");
  }
  auto* status_cmd = app.add_subcommand("status", "The supervisor, the fork server and every worker, by id");
  status_cmd->add_flag("--json", json, "As JSON");
  bool as_prometheus = false;
  status_cmd->add_flag("--prometheus", as_prometheus, "The daemon's metrics in Prometheus text format (for a textfile collector)")
      ->excludes("--json");
  auto* kill_cmd = app.add_subcommand("kill", "SIGKILL one worker (the pool respawns it)");
  kill_cmd->add_option("pid", pid, "The worker's pid")->required();
  auto* scale_cmd = app.add_subcommand("scale", "Grow or shrink the pool to N workers");
  scale_cmd->add_option("n", workers, "Workers")->required()->check(CLI::Range(1, 4096));
  auto* stop_cmd = app.add_subcommand("stop", "Stop the daemon: drain, or at once with --now");
  stop_cmd->add_flag("--now", now, "Cancel running jobs instead of waiting for them");
  auto* tasks_cmd = app.add_subcommand("tasks", "The tasks the daemon serves");
  tasks_cmd->add_flag("--json", json, "As JSON");

  auto* queue_cmd = app.add_subcommand("queue", "Inspect and tend a Redis queue that daemons consume");
  queue_cmd->require_subcommand(1);
  auto* stats_cmd = queue_cmd->add_subcommand("stats", "Its jobs waiting and pending, and each consumer's jobs and idle time");
  auto* dead_cmd = queue_cmd->add_subcommand("dead", "Its dead letters, with the error each died of");
  dead_cmd->add_option("--count", count, "At most this many")->capture_default_str()->check(CLI::Range(1, 1'000'000));
  auto* retry_cmd = queue_cmd->add_subcommand("retry", "Put a dead letter back on the queue; print the new job's id");
  retry_cmd->add_option("id", dead_id, "The dead letter's id (see 'parallelcode queue dead')")->required();
  retry_cmd->add_flag("--wait", wait, "Wait for the job and print its result as submit does");
  retry_cmd->add_flag("-r,--raw", flags.raw, "With --wait: print a string result without quotes");
  auto* purge_cmd = queue_cmd->add_subcommand("purge", "Drop every job no daemon has taken yet, and every dead letter");
  for (auto* cmd : {stats_cmd, dead_cmd, retry_cmd, purge_cmd}) {
    add_queue_options(cmd)->required();
    if (cmd != retry_cmd) cmd->add_flag("--json", json, "As JSON");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : cli::exit_refused;  // --help is no error; bad usage is a refusal
  }

  try {
    how.halt = cli::parse_halt(halt);
    if (queue_cmd->parsed() || (!target.url.empty() && (submit_cmd->parsed() || map_cmd->parsed()))) {
#ifdef PARALLELCODE_HAVE_REMOTE
      how.progress = how.progress || ::isatty(STDERR_FILENO);
      if (submit_cmd->parsed()) return cli::remote_submit(target, task, args, flags);
      if (map_cmd->parsed()) return cli::remote_map(target, task, flags, how, window);
      if (stats_cmd->parsed()) return cli::show_stats(target, json);
      if (dead_cmd->parsed()) return cli::show_dead(target, count, json);
      if (retry_cmd->parsed()) return cli::retry_dead(target, dead_id, wait, flags.raw);
      if (purge_cmd->parsed()) return cli::purge_queue(target, json);
#else
      std::cerr << "parallelcode: this parallelcode was built without Redis support\n";
      return cli::exit_refused;
#endif
    }
    connection conn(socket);
    if (submit_cmd->parsed()) return submit(conn, task, args, flags);
    how.progress = how.progress || ::isatty(STDERR_FILENO);
    if (map_cmd->parsed()) return map(conn, task, flags, how, window);
    if (status_cmd->parsed()) return as_prometheus ? prometheus(conn) : status(conn, json);
    if (kill_cmd->parsed()) return simple(conn, ctl::encode(ctl::kill_request{std::nullopt, pid}));
    if (scale_cmd->parsed()) return simple(conn, ctl::encode(ctl::scale_request{std::nullopt, workers}));
    if (stop_cmd->parsed()) return simple(conn, ctl::encode(ctl::stop_request{std::nullopt, now}));
    if (tasks_cmd->parsed()) return list_tasks(conn, json);
  } catch (const no_daemon& e) {
    std::cerr << "parallelcode: " << e.what() << "\n";
    return cli::exit_unreachable;
  } catch (const std::invalid_argument& e) {
    std::cerr << "parallelcode: " << e.what() << "\n";
    return cli::exit_refused;
  }
  return 0;
}
