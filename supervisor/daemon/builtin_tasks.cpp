// The daemon's built-in tasks. Their arguments are JSON objects read by field name.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>

#include <parallelcode/task.hpp>

namespace {

struct greeting {
  std::string text;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(text));
  }
};

struct sleep_args {
  std::int64_t ms = 0;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(ms));
  }
};

struct fnv_args {
  std::int64_t iters = 0;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(iters));
  }
};

// 64-bit FNV-1a over the bytes i & 0xff, i = 0..iters-1: CPU work that cannot be
// skipped, with known answers (1000 -> 9ebd4ca7a79e5ddd).
std::string fnv(const fnv_args& a) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::int64_t i = 0; i < a.iters; ++i) {
    h ^= static_cast<std::uint64_t>(i & 0xff);
    h *= 0x100000001b3ULL;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::int64_t nap(const sleep_args& a) {
  std::this_thread::sleep_for(std::chrono::milliseconds(a.ms));
  return a.ms;
}

}  // namespace

PARALLELCODE_TASK("hello", [](const greeting& g) { return "Hello " + g.text + "!"; });
PARALLELCODE_TASK("echo", [](const parallelcode::json& j) { return j; });
PARALLELCODE_TASK("sleep", &nap);
PARALLELCODE_TASK("fnv", &fnv);
