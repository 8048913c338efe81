#include "answers.hpp"

#include <chrono>
#include <cstdint>

#include "json_writer.hpp"
#include "protocol.hpp"

namespace parallelcode::control {

namespace {

const char* state_name(worker_state s) {
  switch (s) {
    case worker_state::ready:
      return "ready";
    case worker_state::backoff:
      return "backoff";
    case worker_state::starting:
      break;
  }
  return "starting";
}

}  // namespace

std::string ok_answer(request_id id) {
  json_writer out;
  out.open().id(id).key("ok").boolean(true).close();
  return out.text();
}

std::string error_answer(const request_error& e) { return error_answer(e.id, e.type, e.message); }

std::string result_answer(request_id id, std::string_view result, std::optional<int> worker_pid,
                          std::string_view consumer) {
  if (!is_json(result)) {
    rapidjson::Document why;  // only here: a document is a heap allocation, even empty
    return error_answer(id, "payload_error",
                        "the task answered something that is not JSON: " + parse(result, why).value_or("not JSON"));
  }
  json_writer out;
  out.open().id(id).key("ok").boolean(true);
  if (!consumer.empty()) out.key("consumer").string(consumer);
  if (worker_pid) out.key("worker_pid").number(*worker_pid);
  out.key("result").raw(result).close();
  return out.text();
}

std::string_view job_error_type(const job_error& e) {
  if (dynamic_cast<const worker_lost*>(&e)) return "worker_lost";
  if (dynamic_cast<const job_failed*>(&e)) return "job_failed";
  if (dynamic_cast<const job_timeout*>(&e)) return "job_timeout";
  if (dynamic_cast<const payload_error*>(&e)) return "payload_error";
  return "job_cancelled";
}

std::string job_error_answer(request_id id, const job_error& e) {
  json_writer out;
  if (const auto* lost = dynamic_cast<const worker_lost*>(&e)) {
    out.open_error(id, "worker_lost", e.what()).key("pid").number(static_cast<int>(lost->pid()));
    out.key("signal").number(lost->signal());
    if (lost->signal()) out.key("signal_name").string(signal_name(lost->signal()));
    out.key("exit_status").number(lost->exit_status());
  } else if (const auto* failed = dynamic_cast<const job_failed*>(&e)) {
    out.open_error(id, "job_failed", failed->message()).key("exception").string(failed->type());
  } else if (const auto* late = dynamic_cast<const job_timeout*>(&e)) {
    out.open_error(id, "job_timeout", e.what()).key("timeout_ms").number(static_cast<std::int64_t>(late->timeout().count()));
    out.key("pid").number(static_cast<int>(late->pid()));
  } else {
    out.open_error(id, job_error_type(e), e.what());
  }
  out.close().close();
  return out.text();
}

std::string tasks_answer(request_id id, const std::vector<task_info>& tasks) {
  json_writer out;
  out.open().id(id).key("ok").boolean(true).key("tasks").open_array();
  for (const auto& t : tasks)
    out.open().key("name").string(t.name).key("argument").string(t.argument).key("result").string(t.result)
        .key("argument_schema").raw(t.argument_schema).key("result_schema").raw(t.result_schema).close();
  out.close_array().close();
  return out.text();
}

std::string status_answer(request_id id, const daemon_status& s) {
  json_writer out;
  out.open().id(id).key("ok").boolean(true).key("supervisor").number(static_cast<int>(s.supervisor));
  out.key("fork_server").number(static_cast<int>(s.stats.fork_server)).key("stopping").boolean(s.stopping);
  out.key("queued").number(std::uint64_t{s.stats.queued}).key("submitted").number(s.stats.submitted);
  out.key("completed").number(s.stats.completed).key("failed").number(s.stats.failed);
  out.key("respawns").number(s.stats.respawns).key("workers").open_array();
  for (const auto& w : s.workers) {
    out.open().key("id").number(w.id).key("pid").number(static_cast<int>(w.pid)).key("state").string(state_name(w.state));
    out.key("running").number(w.running).key("done").number(w.done).key("respawns").number(w.respawns);
    out.key("recycled").number(w.recycled);
    out.key("uptime_ms").number(static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(w.uptime).count()));
    out.key("rss").number(std::uint64_t{w.rss}).close();
  }
  out.close_array();
  if (const auto& q = s.queue) {
    out.key("queue").open().key("url").string(q->url).key("name").string(q->queue).key("consumer").string(q->consumer);
    out.key("connected").boolean(q->connected).key("held").number(std::uint64_t{q->held});
    out.key("completed").number(q->completed).key("renewals").number(q->renewals).key("reclaims").number(q->reclaims);
    out.key("dead_lettered").number(q->dead_lettered).key("discarded").number(q->discarded).close();
  }
  out.close();
  return out.text();
}

std::string metrics_answer(request_id id, std::string_view text) {
  json_writer out;
  out.open().id(id).key("ok").boolean(true).key("text").string(text).close();
  return out.text();
}

}  // namespace parallelcode::control
