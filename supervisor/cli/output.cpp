#include "output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <iostream>

#include "units.hpp"

namespace parallelcode::cli {

namespace ctl = parallelcode::control;

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

namespace {

const rapidjson::Value& error_of(const rapidjson::Value& response) {
  static const rapidjson::Value none(rapidjson::kObjectType);
  return response.IsObject() && response.HasMember("error") && response["error"].IsObject() ? response["error"] : none;
}

std::string error_field(const rapidjson::Value& response, const char* key) {
  const auto& e = error_of(response);
  return e.HasMember(key) && e[key].IsString() ? ctl::string_member(e, key) : "";
}

// Refusals (exit 2) and the queue's own verdicts, as against failures of a job that ran (exit 1).
int exit_status_of(const std::string& type) {
  if (type == "deadline_exceeded") return exit_deadline;
  if (type == "dead_lettered") return exit_dead_lettered;
  if (type == "bad_request" || type == "unknown_task" || type == "not_a_worker" || type == "stopping" ||
      type == "bad_frame" || type == "busy" || type == "forbidden" || type == "payload_error")
    return exit_refused;
  return exit_failed;
}

}  // namespace

std::chrono::milliseconds milliseconds_of(const std::string& text) {
  return std::chrono::ceil<std::chrono::milliseconds>(ctl::parse_duration(text));
}

bool check_arguments(std::string_view args) {
  rapidjson::Document check;
  if (auto bad = ctl::parse(args, check)) {
    std::cerr << "parallelcode: the arguments are " << *bad << "\n";
    return false;
  }
  return true;
}

bool ok(const rapidjson::Value& response) {
  return response.IsObject() && response.HasMember("ok") && response["ok"].IsBool() && response["ok"].GetBool();
}

std::string result_of(std::string_view body, const rapidjson::Value& response, bool raw) {
  if (raw && response.HasMember("result") && response["result"].IsString()) return ctl::string_member(response, "result");
  const auto text = ctl::member_text(body, "result");
  return text ? compact(*text) : "null";
}

int report_error(const rapidjson::Value& response) {
  std::string message = error_field(response, "message");
  if (message.rfind("parallelcode: ", 0) != 0) message = "parallelcode: " + message;
  const std::string type = error_field(response, "type");
  if (type == "job_failed") message += " (" + error_field(response, "exception") + ")";
  std::cerr << message << "\n";
  return exit_status_of(type);
}

int print_answer(std::string_view body, const rapidjson::Value& response, bool raw) {
  if (!ok(response)) return report_error(response);
  std::cout << result_of(body, response, raw) << "\n";
  return 0;
}

std::pair<std::string, bool> map_line(std::string_view body, const rapidjson::Value& response, bool raw) {
  if (ok(response)) return {result_of(body, response, raw), false};
  return {"{\"error\":" + ctl::to_text(error_of(response)) + "}", true};
}

void ordered_output::add(std::size_t line, std::string text, bool failed) {
  ++received_;
  failed_ += failed;
  if (unordered_) {
    print(text);
    return;
  }
  waiting_.emplace(line, std::move(text));
  for (auto it = waiting_.find(printed_); it != waiting_.end(); it = waiting_.find(printed_)) {
    print(it->second);
    waiting_.erase(it);
  }
}

void ordered_output::print(const std::string& text) {
  progress_.clear();
  std::cout << text << "\n";
  ++printed_;
}

int ordered_output::finish() {
  std::cout.flush();
  progress_.finish(received_, failed_);
  return failed_ ? exit_failed : 0;
}

std::string_view error_type(const rapidjson::Value& response) {
  const auto& e = error_of(response);
  if (ok(response) || !e.HasMember("type") || !e["type"].IsString()) return {};
  return {e["type"].GetString(), e["type"].GetStringLength()};
}

halt_policy parse_halt(const std::string& text) {
  const auto bad = [&] { return std::invalid_argument("--halt " + text + ": give now,fail=N or soon,fail=N (N at least 1), or never"); };
  if (text == "never") return {};
  const auto comma = text.find(',');
  if (comma == std::string::npos || text.compare(comma + 1, 5, "fail=") != 0) throw bad();
  const std::string when = text.substr(0, comma), count = text.substr(comma + 6);
  halt_policy h;
  if (when == "now") h.at = halt_policy::when::now;
  else if (when == "soon") h.at = halt_policy::when::soon;
  else throw bad();
  if (count.empty() || count.size() > 9 || count.find_first_not_of("0123456789") != std::string::npos) throw bad();
  h.failures = std::stoul(count);
  if (h.failures == 0) throw bad();
  return h;
}

job_log::job_log(const std::string& path) {
  if (path.empty()) return;
  file_.open(path, std::ios::trunc);
  if (!file_) throw std::invalid_argument("--joblog " + path + ": " + std::strerror(errno));
  file_ << "Seq\tStarttime\tJobRuntime\tWorker\tOutcome\n";
}

void job_log::sent(std::size_t line) {
  if (file_.is_open()) sent_[line] = std::chrono::system_clock::now();
}

void job_log::answered(std::size_t line, const rapidjson::Value& response) {
  if (!file_.is_open()) return;
  const auto it = sent_.find(line);
  if (it == sent_.end()) return;
  const auto now = std::chrono::system_clock::now();
  const double start = std::chrono::duration<double>(it->second.time_since_epoch()).count();
  const double took = std::chrono::duration<double>(now - it->second).count();
  sent_.erase(it);
  const rapidjson::Value& error = error_of(response);
  std::string pid = "-";
  if (response.HasMember("worker_pid") && response["worker_pid"].IsInt()) pid = std::to_string(response["worker_pid"].GetInt());
  else if (error.HasMember("pid") && error["pid"].IsInt()) pid = std::to_string(error["pid"].GetInt());
  // Through a queue: which daemon's worker, as host:pid/worker pid.
  if (pid != "-" && response.HasMember("consumer") && response["consumer"].IsString())
    pid = ctl::string_member(response, "consumer") + "/" + pid;
  const std::string outcome = ok(response) ? "ok"
                              : error.HasMember("type") && error["type"].IsString() ? error["type"].GetString()
                                                                                    : "error";
  char row[128];
  std::snprintf(row, sizeof row, "%zu\t%.3f\t%.3f\t", line + 1, start, took);
  file_ << row << pid << '\t' << outcome << '\n';
}

namespace {

// The non-blank records of a regular file from its current offset, read beside the
// stream (pread), or none if fd is no regular file.
std::optional<std::size_t> count_records(int fd, char delimiter) {
  struct stat st{};
  off_t at = ::lseek(fd, 0, SEEK_CUR);
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || at < 0) return std::nullopt;
  std::size_t records = 0;
  bool blank = true;
  char chunk[65536];
  for (ssize_t n; (n = ::pread(fd, chunk, sizeof chunk, at)) > 0; at += n)
    for (ssize_t k = 0; k < n; ++k) {
      if (chunk[k] == delimiter) {
        records += !blank;
        blank = true;
      } else if (chunk[k] != ' ' && chunk[k] != '\t' && chunk[k] != '\r' && chunk[k] != '\n') {
        blank = false;
      }
    }
  return records + !blank;
}

}  // namespace

map_input::map_input(ordered_output& out, const map_settings& settings)
    : out_(out), in_(&std::cin), delimiter_(settings.delimiter) {
  if (settings.input != "-") {
    file_.open(settings.input, std::ios::binary);
    if (!file_) throw std::invalid_argument("cannot read " + settings.input + ": " + std::strerror(errno));
    in_ = &file_;
    const int fd = ::open(settings.input.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      total_ = count_records(fd, delimiter_);
      ::close(fd);
    }
  } else {
    total_ = count_records(STDIN_FILENO, delimiter_);
  }
}

std::optional<std::pair<std::size_t, std::string>> map_input::next() {
  std::string line;
  while (!done_ && std::getline(*in_, line, delimiter_)) {
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    const std::size_t i = read_++;
    if (line.size() > ctl::default_max_frame - 1024) {
      out_.add(i, ctl::error_answer(std::nullopt, "bad_request", "line " + std::to_string(i + 1) + " is too long"), true);
    } else if (!ctl::is_json(line)) {
      rapidjson::Document why;  // parse() says why; only here, as a document is a heap allocation
      out_.add(i, ctl::error_answer(std::nullopt, "bad_request",
                                    "line " + std::to_string(i + 1) + ": " + ctl::parse(line, why).value_or("not JSON")), true);
    } else {
      return std::pair{i, std::move(line)};
    }
  }
  done_ = true;
  return std::nullopt;
}

std::string duration_text(std::int64_t ms) {
  char s[32];
  if (ms < 60'000) std::snprintf(s, sizeof s, "%.1fs", static_cast<double>(ms) / 1000);
  else if (ms < 3'600'000) std::snprintf(s, sizeof s, "%lldm", static_cast<long long>(ms / 60'000));
  else std::snprintf(s, sizeof s, "%lldh", static_cast<long long>(ms / 3'600'000));
  return s;
}

namespace {

std::string member_string(const rapidjson::Value& v, const char* name) {
  const auto m = v.FindMember(name);
  return m != v.MemberEnd() && m->value.IsString() ? std::string(m->value.GetString(), m->value.GetStringLength()) : "";
}

std::string joined(const rapidjson::Value& list, const char* separator) {
  std::string out;
  for (const auto& s : list.GetArray()) out += (out.empty() ? "" : separator) + schema_text(s);
  return out;
}

}  // namespace

std::string schema_text(const rapidjson::Value& schema) {
  if (!schema.IsObject()) return "any";
  if (schema.HasMember("oneOf") && schema["oneOf"].IsArray()) return joined(schema["oneOf"], " | ");
  const std::string type = member_string(schema, "type"), format = member_string(schema, "format");
  if (type == "integer" || type == "number") return format.empty() ? type : format;
  if (type == "array") {
    if (schema.HasMember("prefixItems") && schema["prefixItems"].IsArray()) return "[" + joined(schema["prefixItems"], ", ") + "]";
    const std::string items = schema.HasMember("items") ? schema_text(schema["items"]) : "any";
    const auto fixed = schema.FindMember("maxItems");
    return "[" + items + (fixed != schema.MemberEnd() && fixed->value.IsUint64() ? "; " + std::to_string(fixed->value.GetUint64()) : "") + "]";
  }
  if (type == "object") {
    const auto properties = schema.FindMember("properties");
    if (properties == schema.MemberEnd() || !properties->value.IsObject()) return "{}";
    std::vector<std::string> required;
    if (schema.HasMember("required") && schema["required"].IsArray())
      for (const auto& r : schema["required"].GetArray())
        if (r.IsString()) required.emplace_back(r.GetString(), r.GetStringLength());
    std::string out;
    for (const auto& p : properties->value.GetObject()) {
      const std::string name(p.name.GetString(), p.name.GetStringLength());
      const bool optional = std::find(required.begin(), required.end(), name) == required.end();
      out += (out.empty() ? "" : ", ") + name + (optional ? "?: " : ": ") + schema_text(p.value);
    }
    return "{" + out + "}";
  }
  return type.empty() ? "any" : type;
}

}  // namespace parallelcode::cli
