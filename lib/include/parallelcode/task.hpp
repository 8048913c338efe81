#pragma once

// Named tasks: functions registered under a name at load time, so that a caller
// who has no address to send (the daemon's clients) can name one. From C++,
// pool.task<R>("name", data) runs one with the binary codec; from JSON,
// pool.job(&run_json, json_call{"name", args}) runs it through the JSON codec (detail/json.hpp).
// Registering needs that codec; listing and running need only named_tasks.hpp.
//
//   struct greeting { std::string text; template <class A> void serialize(A& a) { a(CEREAL_NVP(text)); } };
//   PARALLELCODE_TASK("hello", [](const greeting& g) { return "Hello " + g.text + "!"; });

#include <string_view>
#include <type_traits>
#include <typeinfo>

#include <parallelcode/detail/invoke.hpp>
#include <parallelcode/detail/json.hpp>
#include <parallelcode/detail/schema.hpp>
#include <parallelcode/detail/signature.hpp>
#include <parallelcode/detail/task_entry.hpp>
#include <parallelcode/named_tasks.hpp>

namespace parallelcode::detail {

template <class F>
bool add_task(std::string_view name, F fn) noexcept {
  static_assert(is_job_function_v<F>,
                "PARALLELCODE_TASK: the function must not capture anything; use a function pointer or a lambda with []");
  using D = task_argument_t<F>;
  using R = job_result_t<F, D>;
  return register_task(name, {&invoke<F, D>, &invoke_json<F, D>, function_address(fn), &typeid(D),
                              &typeid(std::conditional_t<std::is_void_v<R>, void, R>), &json_schema<D>,
                              &json_schema<R>});
}

}  // namespace parallelcode::detail

#define PARALLELCODE_TASK_JOIN2(a, b) a##b
#define PARALLELCODE_TASK_JOIN(a, b) PARALLELCODE_TASK_JOIN2(a, b)
// Registers fn as the task `name` when this file's code is loaded (at start-up,
// or when a plugin is dlopen()ed).
// Variadic: a lambda's commas are not inside parentheses.
#define PARALLELCODE_TASK(name, ...)                                                            \
  [[maybe_unused]] static const bool PARALLELCODE_TASK_JOIN(parallelcode_task_, __COUNTER__) = \
      ::parallelcode::detail::add_task(name, __VA_ARGS__)
