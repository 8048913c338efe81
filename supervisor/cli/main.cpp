// parallelcode: feeds and operates a running parallelcode-supervisor.
//
// Exit status: 0 done; 1 a job failed; 2 the daemon refused the request (an
// unknown task, a pid that is not a worker, bad arguments); 3 no daemon to talk to.

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "protocol.hpp"
#include "units.hpp"

namespace {

namespace ctl = parallelcode::control;

constexpr int exit_failed = 1;
constexpr int exit_refused = 2;
constexpr int exit_no_daemon = 3;

// The daemon is gone or spoke nonsense: nothing this command can do.
struct no_daemon : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class connection {
 public:
  explicit connection(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw no_daemon("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw no_daemon("cannot connect to " + path + " (" + std::strerror(errno) +
                      "): is parallelcode-supervisor running there?");
  }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() { ::close(fd_); }

  void queue(std::string_view body) { ctl::append_frame(out_, body); }
  bool sending() const { return !out_.empty(); }

  // Sends what is queued and reads what has come, waiting until either moves.
  // Returns the complete response bodies received.
  std::vector<std::string> exchange() {
    pollfd p{fd_, static_cast<short>(POLLIN | (out_.empty() ? 0 : POLLOUT)), 0};
    if (::poll(&p, 1, -1) < 0 && errno != EINTR) throw no_daemon(std::string("poll: ") + std::strerror(errno));
    if (p.revents & POLLOUT) {
      const ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && errno != EAGAIN) throw no_daemon("the daemon went away");
      if (n > 0) out_.erase(0, static_cast<std::size_t>(n));
    }
    std::vector<std::string> bodies;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      char chunk[65536];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN)) throw no_daemon("the daemon closed the connection");
      if (n > 0) in_.append(chunk, static_cast<std::size_t>(n));
      while (in_.size() >= 4 && in_.size() >= 4 + std::size_t{ctl::frame_length(in_.data())}) {
        const std::size_t len = ctl::frame_length(in_.data());
        bodies.push_back(in_.substr(4, len));
        in_.erase(0, 4 + len);
      }
    }
    return bodies;
  }

  // One request, its one response.
  void ask(std::string_view body, rapidjson::Document& response) {
    queue(body);
    for (;;)
      for (auto& b : exchange()) {
        if (auto bad = ctl::parse(b, response)) throw no_daemon("the daemon answered something that is not JSON: " + *bad);
        return;
      }
  }

 private:
  int fd_ = -1;
  std::string out_;
  std::string in_;
};

std::string text_of(const rapidjson::Value& v, bool raw) {
  if (raw && v.IsString()) return std::string(v.GetString(), v.GetStringLength());
  return ctl::to_text(v);
}

bool ok(const rapidjson::Value& response) {
  return response.IsObject() && response.HasMember("ok") && response["ok"].IsBool() && response["ok"].GetBool();
}

const rapidjson::Value& error_of(const rapidjson::Value& response) {
  static const rapidjson::Value none(rapidjson::kObjectType);
  return response.IsObject() && response.HasMember("error") && response["error"].IsObject() ? response["error"] : none;
}

std::string error_field(const rapidjson::Value& response, const char* key) {
  const auto& e = error_of(response);
  return e.HasMember(key) && e[key].IsString() ? e[key].GetString() : "";
}

// The daemon's refusals (exit 2) as against failures of a job that ran (exit 1).
bool refused(const rapidjson::Value& response) {
  const std::string type = error_field(response, "type");
  return type == "bad_request" || type == "unknown_task" || type == "not_a_worker" || type == "stopping" ||
         type == "bad_frame" || type == "busy";
}

int report_error(const rapidjson::Value& response) {
  std::string message = error_field(response, "message");
  if (message.rfind("parallelcode: ", 0) != 0) message = "parallelcode: " + message;
  const std::string type = error_field(response, "type");
  if (type == "job_failed") message += " (" + error_field(response, "exception") + ")";
  std::cerr << message << "\n";
  return refused(response) ? exit_refused : exit_failed;
}

std::string submit_request(const std::string& task, const std::string& args, std::optional<std::int64_t> id,
                           const std::string& timeout, unsigned retries) {
  std::string body = "{\"op\":\"submit\",\"task\":" + ctl::quote(task) + ",\"args\":" + args;
  if (id) body += ",\"id\":" + std::to_string(*id);
  if (!timeout.empty())
    body += ",\"timeout_ms\":" +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(ctl::parse_duration(timeout)).count());
  if (retries) body += ",\"retries\":" + std::to_string(retries);
  return body + "}";
}

int submit(connection& conn, const std::string& task, const std::string& args, const std::string& timeout,
           unsigned retries, bool raw) {
  rapidjson::Document check;
  if (auto bad = ctl::parse(args, check)) {
    std::cerr << "parallelcode: the arguments are " << *bad << "\n";
    return exit_refused;
  }
  rapidjson::Document response;
  conn.ask(submit_request(task, args, std::nullopt, timeout, retries), response);
  if (!ok(response)) return report_error(response);
  std::cout << text_of(response["result"], raw) << "\n";
  return 0;
}

void draw_progress(std::size_t done, std::size_t total, bool finished) {
  const int width = 30;
  const int filled = total ? static_cast<int>(width * done / total) : width;
  std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu", filled, "##############################", width - filled, "", done, total);
  if (finished) std::fputc('\n', stderr);
  std::fflush(stderr);
}

// One job per input line, at most `window` in flight; answers in input order.
int map(connection& conn, const std::string& task, const std::string& timeout, unsigned retries, bool raw,
        bool progress, std::size_t window) {
  std::vector<std::string> lines;
  for (std::string line; std::getline(std::cin, line);)
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
  std::vector<std::optional<std::string>> answers(lines.size());
  std::size_t next = 0, in_flight = 0, printed = 0, done = 0;
  bool any_failed = false;
  auto answer = [&](std::size_t i, std::string text, bool failed) {
    answers[i] = std::move(text);
    any_failed |= failed;
    ++done;
    for (; printed < answers.size() && answers[printed]; ++printed) std::cout << *answers[printed] << "\n";
  };
  while (done < lines.size()) {
    while (next < lines.size() && in_flight < window) {
      const std::size_t i = next++;
      rapidjson::Document args;
      if (auto bad = ctl::parse(lines[i], args)) {
        answer(i, ctl::error_response(std::nullopt, "bad_request", "line " + std::to_string(i + 1) + ": " + *bad), true);
        continue;
      }
      conn.queue(submit_request(task, lines[i], static_cast<std::int64_t>(i), timeout, retries));
      ++in_flight;
    }
    if (in_flight == 0) break;
    for (auto& body : conn.exchange()) {
      rapidjson::Document response;
      if (auto bad = ctl::parse(body, response)) throw no_daemon("the daemon answered something that is not JSON: " + *bad);
      if (!response.IsObject() || !response.HasMember("id") || !response["id"].IsUint64() ||
          response["id"].GetUint64() >= lines.size()) {
        report_error(response);  // about the connection itself, not one line
        return exit_refused;
      }
      --in_flight;
      const auto i = static_cast<std::size_t>(response["id"].GetUint64());
      if (ok(response))
        answer(i, text_of(response["result"], raw), false);
      else
        answer(i, "{\"error\":" + ctl::to_text(error_of(response)) + "}", true);
    }
    if (progress) draw_progress(done, lines.size(), false);
  }
  std::cout.flush();
  if (progress) draw_progress(done, lines.size(), true);
  return any_failed ? exit_failed : 0;
}

std::string duration_text(std::int64_t ms) {
  char s[32];
  if (ms < 60'000) std::snprintf(s, sizeof s, "%.1fs", static_cast<double>(ms) / 1000);
  else if (ms < 3'600'000) std::snprintf(s, sizeof s, "%lldm", static_cast<long long>(ms / 60'000));
  else std::snprintf(s, sizeof s, "%lldh", static_cast<long long>(ms / 3'600'000));
  return s;
}

std::string size_text(std::uint64_t bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1fM", static_cast<double>(bytes) / (1 << 20));
  return s;
}

int status(connection& conn, bool json) {
  rapidjson::Document r;
  conn.ask(R"({"op":"status"})", r);
  if (!ok(r)) return report_error(r);
  if (json) {
    r.RemoveMember("ok");
    std::cout << ctl::to_text(r) << "\n";
    return 0;
  }
  std::printf("supervisor %lld, fork server %lld, %lld queued, %lld completed, %lld failed%s\n",
              static_cast<long long>(r["supervisor"].GetInt64()), static_cast<long long>(r["fork_server"].GetInt64()),
              static_cast<long long>(r["queued"].GetInt64()), static_cast<long long>(r["completed"].GetInt64()),
              static_cast<long long>(r["failed"].GetInt64()), r["stopping"].GetBool() ? ", stopping" : "");
  std::printf("%4s %8s %-9s %7s %9s %8s %7s %8s\n", "id", "pid", "state", "running", "done", "respawns", "uptime", "rss");
  for (const auto& w : r["workers"].GetArray())
    std::printf("%4d %8d %-9s %7u %9llu %8u %7s %8s\n", w["id"].GetInt(), w["pid"].GetInt(), w["state"].GetString(),
                w["running"].GetUint(), static_cast<unsigned long long>(w["done"].GetUint64()), w["respawns"].GetUint(),
                duration_text(w["uptime_ms"].GetInt64()).c_str(), size_text(w["rss"].GetUint64()).c_str());
  return 0;
}

int simple(connection& conn, const std::string& request) {
  rapidjson::Document r;
  conn.ask(request, r);
  return ok(r) ? 0 : report_error(r);
}

int list_tasks(connection& conn, bool json) {
  rapidjson::Document r;
  conn.ask(R"({"op":"tasks"})", r);
  if (!ok(r)) return report_error(r);
  if (json) {
    std::cout << ctl::to_text(r["tasks"]) << "\n";
    return 0;
  }
  for (const auto& t : r["tasks"].GetArray())
    std::printf("%-20s %s -> %s\n", t["name"].GetString(), t["argument"].GetString(), t["result"].GetString());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"parallelcode: feeds and operates a running parallelcode-supervisor"};
  app.require_subcommand(1);
  std::string socket = ctl::default_socket_path();
  app.add_option("--socket", socket, "The daemon's control socket")->capture_default_str();

  std::string task, args = "null", timeout;
  unsigned retries = 0;
  bool raw = false, json = false, progress = false, now = false;
  std::size_t window = 256;
  long long pid = 0;
  unsigned workers = 0;

  auto* submit_cmd = app.add_subcommand("submit", "Run one job; print its result as JSON");
  submit_cmd->add_option("task", task, "Task name (see 'parallelcode tasks')")->required();
  submit_cmd->add_option("args", args, "Its arguments, as JSON")->capture_default_str();
  auto* map_cmd = app.add_subcommand("map", "One job per line of standard input (JSON arguments); results in input order");
  map_cmd->add_option("task", task, "Task name")->required();
  map_cmd->add_flag("--progress", progress, "Show a progress bar on standard error (the default on a terminal)");
  map_cmd->add_option("--window", window, "Jobs in flight at once")->capture_default_str()->check(CLI::Range(1, 4096));
  for (auto* cmd : {submit_cmd, map_cmd}) {
    cmd->add_option("--timeout", timeout, "Job timeout, with a unit (2s, 500ms)");
    cmd->add_option("--retries", retries, "Run a job again if its worker dies, this many times")->check(CLI::Range(0, 100));
    cmd->add_flag("-r,--raw", raw, "Print string results without quotes");
  }
  auto* status_cmd = app.add_subcommand("status", "The supervisor, the fork server and every worker");
  status_cmd->add_flag("--json", json, "As JSON");
  auto* kill_cmd = app.add_subcommand("kill", "SIGKILL one worker (the pool respawns it)");
  kill_cmd->add_option("pid", pid, "The worker's pid")->required();
  auto* scale_cmd = app.add_subcommand("scale", "Grow or shrink the pool to N workers");
  scale_cmd->add_option("n", workers, "Workers")->required()->check(CLI::Range(1, 4096));
  auto* stop_cmd = app.add_subcommand("stop", "Stop the daemon: drain, or at once with --now");
  stop_cmd->add_flag("--now", now, "Cancel running jobs instead of waiting for them");
  auto* tasks_cmd = app.add_subcommand("tasks", "The tasks the daemon serves");
  tasks_cmd->add_flag("--json", json, "As JSON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : exit_refused;  // --help is no error; bad usage is a refusal
  }

  try {
    connection conn(socket);
    if (submit_cmd->parsed()) return submit(conn, task, args, timeout, retries, raw);
    if (map_cmd->parsed())
      return map(conn, task, timeout, retries, raw, progress || ::isatty(STDERR_FILENO), window);
    if (status_cmd->parsed()) return status(conn, json);
    if (kill_cmd->parsed()) return simple(conn, "{\"op\":\"kill\",\"pid\":" + std::to_string(pid) + "}");
    if (scale_cmd->parsed()) return simple(conn, "{\"op\":\"scale\",\"workers\":" + std::to_string(workers) + "}");
    if (stop_cmd->parsed()) return simple(conn, std::string("{\"op\":\"stop\",\"now\":") + (now ? "true" : "false") + "}");
    if (tasks_cmd->parsed()) return list_tasks(conn, json);
  } catch (const no_daemon& e) {
    std::cerr << "parallelcode: " << e.what() << "\n";
    return exit_no_daemon;
  } catch (const std::invalid_argument& e) {
    std::cerr << "parallelcode: " << e.what() << "\n";
    return exit_refused;
  }
  return 0;
}
