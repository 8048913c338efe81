#pragma once

// The daemon's answers, written with rapidjson::Writer. These take the library's
// types (its job errors, stats and task list): programs that use them link it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include <parallelcode/errors.hpp>
#include <parallelcode/info.hpp>
#include <parallelcode/named_tasks.hpp>

#include "requests.hpp"

namespace parallelcode::control {

// {"id":id,"ok":true}
std::string ok_answer(request_id id);
// The refusal decode_request found.
std::string error_answer(const request_error& e);
// A job's result, as the task wrote it; a payload_error if that is no JSON text
// (a task returning parallelcode::json answers what it likes: the protocol stays whole).
// worker_pid: who ran it, when the submit asked (with_worker; map --joblog does), and
// on a queue the consumer (host:pid of the daemon) whose worker it was.
std::string result_answer(request_id id, std::string_view result, std::optional<int> worker_pid = std::nullopt,
                          std::string_view consumer = {});
// worker_lost, job_failed, job_timeout, payload_error or job_cancelled.
std::string_view job_error_type(const job_error& e);
// How a job ended badly: its job_error_type and what the error knows.
std::string job_error_answer(request_id id, const job_error& e);
std::string tasks_answer(request_id id, const std::vector<task_info>& tasks);

// A daemon's end of a remote queue (supervisor/remote's consumer fills it).
struct queue_status {
  std::string url;  // without its password
  std::string queue;
  std::string consumer;
  bool connected = false;
  std::size_t held = 0;
  std::uint64_t completed = 0, renewals = 0, reclaims = 0, dead_lettered = 0, discarded = 0;
};

struct daemon_status {
  pid_t supervisor;
  bool stopping;
  pool_stats stats;
  std::vector<worker_info> workers;
  std::optional<queue_status> queue;
};
std::string status_answer(request_id id, const daemon_status& s);
// {"id":id,"ok":true,"text":text}: the Prometheus exposition, for a textfile collector.
std::string metrics_answer(request_id id, std::string_view text);

}  // namespace parallelcode::control
