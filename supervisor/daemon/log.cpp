#include "log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <stdexcept>
#include <string>

#include "json_writer.hpp"

namespace parallelcode::control {

namespace {

constexpr const char* level_names[] = {"error", "warning", "info", "debug"};
constexpr const char* priority_prefixes[] = {"<3>", "<4>", "<6>", "<7>"};  // sd-daemon(3): err, warning, info, debug

struct log_config {
  log_level lowest = log_level::info;
  log_format format = log_format::text;
  bool journal = false;
};
log_config config;  // written once by configure_log, before any other thread starts
std::mutex write_mutex;

// systemd sets JOURNAL_STREAM to "DEV:INO" of the stream it connected; stderr may since have been redirected.
bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream) return false;
  unsigned long long dev = 0, ino = 0;
  char extra = 0;
  if (std::sscanf(stream, "%llu:%llu%c", &dev, &ino, &extra) != 2) return false;
  struct stat st{};
  return ::fstat(STDERR_FILENO, &st) == 0 && st.st_dev == dev && st.st_ino == ino;
}

std::string formatted(const char* format, va_list args) {
  va_list again;
  va_copy(again, args);
  char small[512];
  const int n = std::vsnprintf(small, sizeof small, format, args);
  std::string text;
  if (n < 0) {
    text = format;
  } else if (static_cast<std::size_t>(n) < sizeof small) {
    text.assign(small, static_cast<std::size_t>(n));
  } else {
    text.resize(static_cast<std::size_t>(n));
    std::vsnprintf(text.data(), text.size() + 1, format, again);
  }
  va_end(again);
  return text;
}

// RFC 3339 in UTC: 2026-12-02T08:41:19Z, or with milliseconds 2026-12-02T08:41:19.123Z.
std::string timestamp(bool milliseconds) {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  std::tm utc{};
  ::gmtime_r(&now.tv_sec, &utc);
  char text[40];
  std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  if (milliseconds) n += static_cast<std::size_t>(std::snprintf(text + n, sizeof text - n, ".%03ld", now.tv_nsec / 1'000'000));
  return std::string(text, n) + "Z";
}

void write_line(log_level level, std::initializer_list<log_field> fields, std::string message) {
  const auto index = static_cast<std::size_t>(level);
  std::string line = config.journal ? priority_prefixes[index] : "";
  if (config.format == log_format::json) {
    json_writer out;
    out.open().key("time").string(timestamp(true)).key("level").string(level_names[index]).key("message").string(message);
    for (const auto& f : fields) out.key(f.key).number(f.value);
    out.close();
    line += out.text();
  } else {
    for (auto& ch : message)
      if (ch == '\n') ch = ' ';  // a line is an event: journald would give a second line no priority
    if (!config.journal) line += timestamp(false) + " parallelcode-supervisor[" + std::to_string(::getpid()) + "]: ";
    line += message;
  }
  line += '\n';
  const int saved = errno;  // callers log from error paths that still read errno
  std::lock_guard lock(write_mutex);
  for (std::size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  errno = saved;
}

}  // namespace

log_level parse_log_level(std::string_view name) {
  for (std::size_t i = 0; i < std::size(level_names); ++i)
    if (name == level_names[i]) return static_cast<log_level>(i);
  throw std::invalid_argument("--log-level must be error, warning, info or debug, not '" + std::string(name) + "'");
}

log_format parse_log_format(std::string_view name) {
  if (name == "text") return log_format::text;
  if (name == "json") return log_format::json;
  throw std::invalid_argument("--log-format must be text or json, not '" + std::string(name) + "'");
}

void configure_log(log_level lowest, log_format format) {
  config = {lowest, format, stderr_is_journal()};
}

void log(log_level level, const char* format, ...) {
  if (level > config.lowest) return;
  va_list args;
  va_start(args, format);
  std::string message = formatted(format, args);
  va_end(args);
  write_line(level, {}, std::move(message));
}

void log(log_level level, std::initializer_list<log_field> fields, const char* format, ...) {
  if (level > config.lowest) return;
  va_list args;
  va_start(args, format);
  std::string message = formatted(format, args);
  va_end(args);
  write_line(level, fields, std::move(message));
}

}  // namespace parallelcode::control
