#pragma once

// The requests of the control protocol as types: decode_request turns one frame's
// body into one of them or into the error the daemon answers, and encode writes each
// as a client sends it. The daemon, the CLI and the fuzzer all go through these.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace parallelcode::control {

using request_id = std::optional<std::int64_t>;  // repeated in the answer, if given

struct submit_request {
  request_id id;
  std::string task;
  std::string args = "null";  // as the client wrote them (1e400, -0.0, escapes), not as parsed
  std::optional<std::chrono::milliseconds> timeout{};
  std::optional<unsigned> retries{};
  bool with_worker = false;  // "with_worker": true: the answer names the worker's pid ("worker_pid")
};
struct status_request {
  request_id id;
};
struct tasks_request {
  request_id id;
};
struct kill_request {
  request_id id;
  std::int64_t pid = 0;  // 1 to 2^31-1
};
struct scale_request {
  request_id id;
  unsigned workers = 0;  // 1 to 4096; the pool may allow fewer
};
struct metrics_request {
  request_id id;
};
struct stop_request {
  request_id id;
  bool now = false;
};

enum class op { none, submit, status, tasks, kill, scale, stop, metrics };

// A frame the daemon refuses, and how.
struct request_error {
  request_id id;
  std::string type;  // bad_frame, bad_request, unknown_task
  std::string message;
  bool closes = false;  // no request at all: after the answer the connection ends
  op in = op::none;     // the op whose own fields were wrong (a daemon that stops or is full says so first)
};

using request = std::variant<submit_request, status_request, tasks_request, kill_request, scale_request, stop_request,
                             metrics_request, request_error>;

// Whether a task of that name is served (parallelcode::has_task, in the daemon).
using task_lookup = bool (*)(std::string_view);

// One frame's body as a request. Never throws for what a client sends.
request decode_request(std::string_view body, task_lookup known_task);

request_id id_of(const request& r) noexcept;

// A request as a client writes it; submit's args must be one JSON text.
std::string encode(const submit_request& r);
std::string encode(const status_request& r);
std::string encode(const tasks_request& r);
std::string encode(const kill_request& r);
std::string encode(const scale_request& r);
std::string encode(const stop_request& r);
std::string encode(const metrics_request& r);

}  // namespace parallelcode::control
