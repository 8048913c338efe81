#pragma once

// Durations ("250ms", "2s", "500us", "1m") and sizes ("64M", "1G", "4096") on
// the command line. Both throw std::invalid_argument on anything else.

#include <chrono>
#include <cstddef>
#include <string>

namespace parallelcode::control {

std::chrono::microseconds parse_duration(const std::string& text);
std::size_t parse_size(const std::string& text);

}  // namespace parallelcode::control
