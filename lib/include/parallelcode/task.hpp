#pragma once

// Named tasks: functions registered under a name at load time, so that a caller
// who has no address to send (the daemon's clients) can name one. From C++,
// pool.task<R>("name", data) runs one with the binary codec; from JSON,
// pool.job(&run_json, json_call{"name", args}) runs it through the JSON codec (detail/json.hpp).
//
//   struct greeting { std::string text; template <class A> void serialize(A& a) { a(CEREAL_NVP(text)); } };
//   PARALLELCODE_TASK("hello", [](const greeting& g) { return "Hello " + g.text + "!"; });

#include <cstdint>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include <parallelcode/detail/invoke.hpp>
#include <parallelcode/detail/json.hpp>
#include <parallelcode/detail/signature.hpp>

namespace parallelcode {

struct task_info {
  std::string name;
  std::string argument;  // the argument's C++ type
  std::string result;    // the result's C++ type
};

// Every registered task, by name.
std::vector<task_info> tasks();
bool has_task(std::string_view name) noexcept;
// Names that were registered more than once (the first registration stands).
std::vector<std::string> task_conflicts();

// A call by name with JSON arguments, and the job that runs it in a worker:
// the result is the task's result as compact JSON. Throws (job_failed) for an
// unknown task and payload_error for arguments that do not fit.
struct json_call {
  std::string task;
  std::string args = "null";
  template <class A>
  void serialize(A& a) {
    a(task, args);
  }
};
std::string run_json(const json_call& call);

namespace detail {

using json_invoke_fn = std::string (*)(std::uintptr_t fn, std::string_view args);

struct task_entry {
  invoke_fn invoke;
  json_invoke_fn invoke_json;
  std::uintptr_t fn;
  const std::type_info* argument;
  const std::type_info* result;
};

// Lock-free lookups: a worker, forked while some host thread may hold any lock,
// must still find its tasks. Register at load time, before start().
bool register_task(std::string_view name, const task_entry& entry) noexcept;
const task_entry* find_task(std::string_view name) noexcept;
// The task, if it takes `argument` and returns `result`; throws std::invalid_argument.
const task_entry& checked_task(std::string_view name, const std::type_info& argument, const std::type_info& result);

template <class F>
bool add_task(std::string_view name, F fn) noexcept {
  static_assert(is_job_function_v<F>,
                "PARALLELCODE_TASK: the function must not capture anything; use a function pointer or a lambda with []");
  using D = task_argument_t<F>;
  using R = job_result_t<F, D>;
  return register_task(name, {&invoke<F, D>, &invoke_json<F, D>, function_address(fn), &typeid(D),
                              &typeid(std::conditional_t<std::is_void_v<R>, void, R>)});
}

}  // namespace detail
}  // namespace parallelcode

#define PARALLELCODE_TASK_JOIN2(a, b) a##b
#define PARALLELCODE_TASK_JOIN(a, b) PARALLELCODE_TASK_JOIN2(a, b)
// Registers fn as the task `name` when this file's code is loaded (at start-up,
// or when a plugin is dlopen()ed).
// Variadic: a lambda's commas are not inside parentheses.
#define PARALLELCODE_TASK(name, ...)                                                            \
  [[maybe_unused]] static const bool PARALLELCODE_TASK_JOIN(parallelcode_task_, __COUNTER__) = \
      ::parallelcode::detail::add_task(name, __VA_ARGS__)
