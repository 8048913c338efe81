#include "output.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "units.hpp"

namespace parallelcode::cli {

namespace ctl = parallelcode::control;

namespace {

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
  waiting_.emplace(line, std::move(text));
  any_failed_ |= failed;
  for (auto it = waiting_.find(printed_); it != waiting_.end(); it = waiting_.find(++printed_)) {
    std::cout << it->second << "\n";
    waiting_.erase(it);
  }
}

int ordered_output::finish(bool progress) {
  std::cout.flush();
  if (progress) draw_progress(printed_, 0, true);
  return any_failed_ ? exit_failed : 0;
}

std::optional<std::pair<std::size_t, std::string>> map_input::next() {
  std::string line;
  while (!done_ && std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::size_t i = read_++;
    rapidjson::Document args;
    if (line.size() > ctl::default_max_frame - 1024)
      out_.add(i, ctl::error_answer(std::nullopt, "bad_request", "line " + std::to_string(i + 1) + " is too long"), true);
    else if (auto bad = ctl::parse(line, args))
      out_.add(i, ctl::error_answer(std::nullopt, "bad_request", "line " + std::to_string(i + 1) + ": " + *bad), true);
    else
      return std::pair{i, std::move(line)};
  }
  done_ = true;
  return std::nullopt;
}

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

std::string duration_text(std::int64_t ms) {
  char s[32];
  if (ms < 60'000) std::snprintf(s, sizeof s, "%.1fs", static_cast<double>(ms) / 1000);
  else if (ms < 3'600'000) std::snprintf(s, sizeof s, "%lldm", static_cast<long long>(ms / 60'000));
  else std::snprintf(s, sizeof s, "%lldh", static_cast<long long>(ms / 3'600'000));
  return s;
}

}  // namespace parallelcode::cli
