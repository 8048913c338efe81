#pragma once

// The crash-loop backoff shared by worker slots and the fork server.

#include <algorithm>
#include <chrono>

namespace parallelcode::detail {

inline constexpr std::chrono::seconds young{1};  // dead this young, having done nothing: it crashed at start-up

// The first death at start-up is respawned at once; each one in a row after it
// waits twice as long as the one before, up to a second.
inline std::chrono::milliseconds backoff_delay(unsigned young_deaths) {
  using namespace std::chrono_literals;
  if (young_deaths < 2) return 0ms;
  const unsigned doublings = std::min(young_deaths - 2, 16u);
  return std::min<std::chrono::milliseconds>(10ms * (1u << doublings), 1000ms);
}

}  // namespace parallelcode::detail
