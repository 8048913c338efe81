#pragma once

// What the daemon and the CLI both read from their command lines: durations ("250ms",
// "1.5s", "1m30s", "2h"), sizes ("4096", "64M" and "64MiB" in powers of 1024, "512MB" in
// powers of 1000), and a queue's password. The parsers throw std::invalid_argument on
// anything else, saying what they take.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace parallelcode::control {

std::chrono::microseconds parse_duration(const std::string& text);
std::size_t parse_size(const std::string& text);

// redis://user:password@host: anyone's ps shows it while we run.
bool url_has_password(std::string_view url);
// The file's text without its trailing newline; std::invalid_argument if unreadable or empty.
std::string read_password_file(const std::string& path);

}  // namespace parallelcode::control
