#pragma once

// Listing and running named tasks, for callers that only know a task's name (the
// daemon): no JSON codec here. Defining one, PARALLELCODE_TASK, is task.hpp's.

#include <string>
#include <string_view>
#include <vector>

#include <parallelcode/export.hpp>

namespace parallelcode {

struct task_info {
  std::string name;
  std::string argument;  // the argument's C++ type
  std::string result;    // the result's C++ type
  std::string argument_schema;  // the JSON a call by name takes, as a JSON Schema ("{}": any JSON)
  std::string result_schema;    // and the JSON it answers with
};

// Every registered task, by name.
PARALLELCODE_API std::vector<task_info> tasks();
PARALLELCODE_API bool has_task(std::string_view name) noexcept;
// Names that were registered more than once (the first registration stands).
PARALLELCODE_API std::vector<std::string> task_conflicts();

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
PARALLELCODE_API std::string run_json(const json_call& call);

}  // namespace parallelcode
