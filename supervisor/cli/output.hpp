#pragma once

// What the CLI makes of an answer, whether a daemon's socket or a Redis queue gave it:
// what it prints, and the exit status. One copy for the socket's and the queue's commands.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <istream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "progress.hpp"
#include "protocol.hpp"

namespace parallelcode::cli {

inline constexpr int exit_failed = 1;
inline constexpr int exit_refused = 2;
inline constexpr int exit_unreachable = 3;  // no daemon, or Redis cannot be reached or refuses the credentials
inline constexpr int exit_deadline = 4;
inline constexpr int exit_dead_lettered = 5;

// What submit and map were told about their jobs.
struct job_flags {
  std::string timeout;  // a duration, or empty for none
  unsigned retries = 0;
  bool raw = false;  // string results without quotes
  std::string deadline;  // the queue's only, as timeout
  std::string idempotency_key;  // the queue's only
};

// A command-line duration in whole milliseconds, rounded up: 100us must not become 0,
// which means none.
std::chrono::milliseconds milliseconds_of(const std::string& text);

// Says on stderr what is wrong with a job's arguments unless they are one JSON text.
bool check_arguments(std::string_view args);

bool ok(const rapidjson::Value& response);

// An answer's result as the daemon wrote it (re-encoding would change its numbers), or a string's bytes.
// JSON text without the blanks between its tokens: one line, each token as it was.
std::string compact(std::string_view text);
std::string result_of(std::string_view body, const rapidjson::Value& response, bool raw);

// Says on stderr why the job or the request failed; returns the exit status for it.
int report_error(const rapidjson::Value& response);
// The type of an answer's error ("busy", "job_failed", ...); "" for a success.
std::string_view error_type(const rapidjson::Value& response);

// submit's output: the result on stdout, or the error on stderr; returns the exit status.
int print_answer(std::string_view body, const rapidjson::Value& response, bool raw);

// One answer as a line of map's output; failed unless the job succeeded.
std::pair<std::string, bool> map_line(std::string_view body, const rapidjson::Value& response, bool raw);

// --halt WHEN,fail=N: after N failed lines, stop taking input and exit 1, at once
// (now) or once the jobs out have answered (soon).
struct halt_policy {
  enum class when { never, soon, now } at = when::never;
  std::size_t failures = 0;
};
// "now,fail=3", "soon,fail=1", "never"; std::invalid_argument otherwise.
halt_policy parse_halt(const std::string& text);

// How map reads its input and prints its results.
struct map_settings {
  std::string input = "-";  // a file, or "-" for standard input
  char delimiter = '\n';    // '\0' with --null
  bool unordered = false;   // print each result as it comes, not in input order
  bool progress = false;
  std::string joblog;       // a file for one tab-separated row per job; "" for none
  halt_policy halt;
};

// --joblog: a header, then a row per job as it ends: its input record's number (from 1),
// when it was sent (seconds since the epoch), how long its answer took, the worker's
// pid ("-" when the answer has none), and "ok" or the error's type.
class job_log {
 public:
  explicit job_log(const std::string& path);  // std::invalid_argument if it cannot be written
  explicit operator bool() const { return file_.is_open(); }
  void sent(std::size_t line);
  void answered(std::size_t line, const rapidjson::Value& response);

 private:
  std::ofstream file_;
  std::map<std::size_t, std::chrono::system_clock::time_point> sent_;
};

// map's output: answers printed in input order as they come (or as they come, with
// unordered), however they arrive, with the progress line on stderr.
class ordered_output {
 public:
  explicit ordered_output(const map_settings& settings) : unordered_(settings.unordered), progress_(settings.progress) {}
  void expect(std::size_t total) { progress_.expect(total); }
  void add(std::size_t line, std::string text, bool failed);
  // How many jobs are out now: redraws the progress line if it is due.
  void running(std::size_t jobs) { progress_.update(received_, failed_, jobs); }
  std::size_t printed() const noexcept { return printed_; }
  std::size_t failed() const noexcept { return failed_; }
  // At the end of the input: flushes, closes the progress line; returns map's exit
  // status, 1 if any line failed (dead-lettered or past its deadline included).
  int finish();

 private:
  void print(const std::string& text);

  bool unordered_;
  progress progress_;
  std::map<std::size_t, std::string> waiting_;  // arrived, not yet printed
  std::size_t printed_ = 0;
  std::size_t received_ = 0;
  std::size_t failed_ = 0;
};

// map's input: the records of a file or standard input (lines, or NUL-separated with
// --null) that are jobs' arguments, numbered in input order; blank ones are skipped,
// and ones that are not JSON are answered into `out`. std::invalid_argument if the file
// cannot be opened.
class map_input {
 public:
  map_input(ordered_output& out, const map_settings& settings);
  // The next job's record and its number; nothing at the end of the input.
  std::optional<std::pair<std::size_t, std::string>> next();
  bool done() const noexcept { return done_; }
  std::size_t read() const noexcept { return read_; }
  // How many records a regular file holds from where reading starts; none for a pipe.
  std::optional<std::size_t> total() const { return total_; }

 private:
  ordered_output& out_;
  std::ifstream file_;
  std::istream* in_;
  char delimiter_;
  std::optional<std::size_t> total_;
  std::size_t read_ = 0;
  bool done_ = false;
};

std::string duration_text(std::int64_t ms);

// A task's JSON Schema as `tasks` prints it: {text: string}, [double], int64 | string;
// "any" for any JSON.
std::string schema_text(const rapidjson::Value& schema);

}  // namespace parallelcode::cli
