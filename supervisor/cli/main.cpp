// parallelcode: feeds and operates a running parallelcode-supervisor. This room holds
// the CLI alone: it speaks to the daemon through supervisor/control, never lib/.
//
// Exit status: 0 done; 1 a job failed; 2 the daemon refused the request (an
// unknown task, a pid that is not a worker, bad arguments); 3 no daemon to talk to.

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>

#include "protocol.hpp"
#include "requests.hpp"
#include "socket.hpp"
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
  explicit connection(const std::string& path) : fd_(connect(path)) {
    // Whoever serves this socket hears our jobs' arguments: only we or root may.
    const auto uid = ctl::peer_uid(fd_);
    if (!uid || (*uid != ::getuid() && *uid != 0))
      throw no_daemon(path + " is served by uid " + std::to_string(uid.value_or(0)) +
                      ", neither you nor root: refusing to use it");
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
      for (auto cut = ctl::cut_frame(in_, 0xffffffff); cut.kind != ctl::frame_cut::partial; cut = ctl::cut_frame(in_, 0xffffffff)) {
        if (cut.kind == ctl::frame_cut::bad_length) throw no_daemon("the daemon sent an empty frame");
        bodies.push_back(in_.substr(4, cut.length));
        in_.erase(0, 4 + std::size_t{cut.length});
      }
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

// JSON text without the blanks between its tokens: one line, each token as it was.
std::string compact(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
      out += c;
    } else if (std::string_view(" \t\r\n").find(c) == std::string_view::npos) {
      out += c;
    }
  }
  return out;
}

// A response's result as the daemon wrote it (re-encoding would change its numbers), or a string's bytes.
std::string result_of(std::string_view body, const rapidjson::Value& response, bool raw) {
  if (raw && response.HasMember("result") && response["result"].IsString()) return ctl::string_member(response, "result");
  const auto text = ctl::member_text(body, "result");
  return text ? compact(*text) : "null";
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
  return e.HasMember(key) && e[key].IsString() ? ctl::string_member(e, key) : "";
}

// The daemon's refusals (exit 2) as against failures of a job that ran (exit 1).
bool refused(const rapidjson::Value& response) {
  const std::string type = error_field(response, "type");
  return type == "bad_request" || type == "unknown_task" || type == "not_a_worker" || type == "stopping" ||
         type == "bad_frame" || type == "busy" || type == "forbidden" || type == "payload_error";
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
  ctl::submit_request r{.id = id, .task = task, .args = args};
  if (!timeout.empty())  // rounded up: 100us must not become 0, which means no timeout
    r.timeout = std::chrono::ceil<std::chrono::milliseconds>(ctl::parse_duration(timeout));
  if (retries) r.retries = retries;
  return ctl::encode(r);
}

int submit(connection& conn, const std::string& task, const std::string& args, const std::string& timeout,
           unsigned retries, bool raw) {
  rapidjson::Document check;
  if (auto bad = ctl::parse(args, check)) {
    std::cerr << "parallelcode: the arguments are " << *bad << "\n";
    return exit_refused;
  }
  rapidjson::Document response;
  const std::string body = conn.ask(submit_request(task, args, std::nullopt, timeout, retries), response);
  if (!ok(response)) return report_error(response);
  std::cout << result_of(body, response, raw) << "\n";
  return 0;
}

// A bar when standard input is a file (its size is known), else a count.
void draw_progress(std::size_t done, std::size_t running, bool finished) {
  struct stat st{};
  const off_t at = ::lseek(STDIN_FILENO, 0, SEEK_CUR);
  if (::fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && at >= 0) {
    const int width = 30;
    const int filled = finished ? width : static_cast<int>(width * std::min<double>(1.0, double(at) / double(st.st_size)));
    std::fprintf(stderr, "\r[%.*s%*s] %zu done, %zu running ", filled, "##############################", width - filled,
                 "", done, running);
  } else {
    std::fprintf(stderr, "\r%zu done, %zu running ", done, running);
  }
  if (finished) std::fputc('\n', stderr);
  std::fflush(stderr);
}

// One job per input line, at most `window` in flight, reading input as it goes;
// answers in input order.
int map(connection& conn, const std::string& task, const std::string& timeout, unsigned retries, bool raw,
        bool progress, std::size_t window) {
  std::map<std::size_t, std::string> answers;  // arrived, not yet printed
  std::size_t read = 0, printed = 0, in_flight = 0;
  bool input_done = false, any_failed = false;
  auto answer = [&](std::size_t i, std::string text, bool failed) {
    answers.emplace(i, std::move(text));
    any_failed |= failed;
    for (auto it = answers.find(printed); it != answers.end(); it = answers.find(++printed)) {
      std::cout << it->second << "\n";
      answers.erase(it);
    }
  };
  for (;;) {
    while (!input_done && in_flight < window) {
      std::string line;
      if (!std::getline(std::cin, line)) {
        input_done = true;
        break;
      }
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::size_t i = read++;
      rapidjson::Document args;
      if (line.size() > ctl::default_max_frame - 1024) {
        answer(i, ctl::error_answer(std::nullopt, "bad_request", "line " + std::to_string(i + 1) + " is too long"), true);
      } else if (auto bad = ctl::parse(line, args)) {
        answer(i, ctl::error_answer(std::nullopt, "bad_request", "line " + std::to_string(i + 1) + ": " + *bad), true);
      } else {
        conn.queue(submit_request(task, line, static_cast<std::int64_t>(i), timeout, retries));
        ++in_flight;
      }
    }
    if (in_flight == 0 && input_done) break;
    if (in_flight == 0) continue;
    for (auto& body : conn.exchange()) {
      rapidjson::Document response;
      if (auto bad = ctl::parse(body, response)) throw no_daemon("the daemon answered something that is not JSON: " + *bad);
      if (!response.IsObject() || !response.HasMember("id") || !response["id"].IsUint64() ||
          response["id"].GetUint64() >= read) {
        return report_error(response);  // about the connection itself, not one line
      }
      --in_flight;
      const auto i = static_cast<std::size_t>(response["id"].GetUint64());
      if (ok(response))
        answer(i, result_of(body, response, raw), false);
      else
        answer(i, "{\"error\":" + ctl::to_text(error_of(response)) + "}", true);
    }
    if (progress) draw_progress(printed, in_flight, false);
  }
  std::cout.flush();
  if (progress) draw_progress(printed, 0, true);
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
  conn.ask(ctl::encode(ctl::status_request{}), r);
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
  conn.ask(ctl::encode(ctl::tasks_request{}), r);
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
  std::int64_t pid = 0;
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
    if (kill_cmd->parsed()) return simple(conn, ctl::encode(ctl::kill_request{std::nullopt, pid}));
    if (scale_cmd->parsed()) return simple(conn, ctl::encode(ctl::scale_request{std::nullopt, workers}));
    if (stop_cmd->parsed()) return simple(conn, ctl::encode(ctl::stop_request{std::nullopt, now}));
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
