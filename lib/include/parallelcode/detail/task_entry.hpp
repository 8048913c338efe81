#pragma once

// The task registry's lookup: all pool::task<R>(name, data) needs, without the
// JSON codec that registering a task (task.hpp) brings in.

#include <cstdint>
#include <string>
#include <string_view>
#include <typeinfo>

#include <parallelcode/detail/invoke.hpp>
#include <parallelcode/export.hpp>

namespace parallelcode::detail {

using json_invoke_fn = std::string (*)(std::uintptr_t fn, std::string_view args);
using json_schema_fn = std::string (*)() noexcept;

struct task_entry {
  invoke_fn invoke;
  json_invoke_fn invoke_json;
  std::uintptr_t fn;
  const std::type_info* argument;
  const std::type_info* result;
  json_schema_fn argument_schema;  // JSON Schemas of what invoke_json reads and writes
  json_schema_fn result_schema;
};

// Lock-free lookups: a worker, forked while some host thread may hold any lock,
// must still find its tasks. Register at load time, before start().
PARALLELCODE_API bool register_task(std::string_view name, const task_entry& entry) noexcept;
// The task, if it takes `argument` and returns `result`; throws std::invalid_argument.
PARALLELCODE_API const task_entry& checked_task(std::string_view name, const std::type_info& argument,
                                                const std::type_info& result);

}  // namespace parallelcode::detail
