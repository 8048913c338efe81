#pragma once

// The daemon's log: one line per event on stderr, from any thread, as text (today's
// look, or journald's <N> priority prefixes when stderr is the journal) or as JSON.

#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace parallelcode::control {

enum class log_level { error, warning, info, debug };
enum class log_format { text, json };

// "error", "warning", "info", "debug"; std::invalid_argument otherwise.
log_level parse_log_level(std::string_view name);
// "text", "json"; std::invalid_argument otherwise.
log_format parse_log_format(std::string_view name);

// Once, before any thread logs: lines below `lowest` are dropped. Also looks whether
// stderr is the journal (JOURNAL_STREAM names its device and inode).
void configure_log(log_level lowest, log_format format);

// A number the JSON format writes as a member of its own (the text shows only the message).
struct log_field {
  std::string_view key;
  std::int64_t value;
};

// One line, written with a single write(2).
void log(log_level level, const char* format, ...) __attribute__((format(printf, 2, 3)));
void log(log_level level, std::initializer_list<log_field> fields, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace parallelcode::control
