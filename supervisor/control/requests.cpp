#include "requests.hpp"

#include <string>

#include "json_writer.hpp"
#include "protocol.hpp"

namespace parallelcode::control {

namespace {

request_error refused(request_id id, op in, std::string message) {
  return {id, "bad_request", std::move(message), false, in};
}

std::optional<std::int64_t> integer(const rapidjson::Value& json, const char* key) {
  if (!json.HasMember(key) || !json[key].IsInt64()) return std::nullopt;
  return json[key].GetInt64();
}

request decode_submit(const rapidjson::Value& json, request_id id, std::optional<std::string_view> args,
                      task_lookup known_task) {
  if (!json.HasMember("task") || !json["task"].IsString())
    return refused(id, op::submit, "submit needs a string \"task\"");
  submit_request r{.id = id, .task = string_member(json, "task")};
  if (!known_task(r.task))
    return request_error{id, "unknown_task", "no task is named '" + r.task + "': see 'parallelcode tasks'", false, op::submit};
  if (json.HasMember("timeout_ms")) {
    const auto ms = integer(json, "timeout_ms");
    if (!ms || *ms < 0 || *ms > longest_timeout_ms)
      return refused(id, op::submit, "\"timeout_ms\" must be an integer from 0 to " + std::to_string(longest_timeout_ms));
    r.timeout = std::chrono::milliseconds(*ms);
  }
  if (json.HasMember("retries")) {
    if (!json["retries"].IsUint() || json["retries"].GetUint() > 100)
      return refused(id, op::submit, "\"retries\" must be an integer from 0 to 100");
    r.retries = json["retries"].GetUint();
  }
  if (json.HasMember("with_worker")) {
    if (!json["with_worker"].IsBool()) return refused(id, op::submit, "\"with_worker\" must be true or false");
    r.with_worker = json["with_worker"].GetBool();
  }
  r.args = std::string(args.value_or("null"));
  return r;
}

}  // namespace

request decode_request(std::string_view body, task_lookup known_task) {
  rapidjson::Document json;
  std::optional<std::string_view> args;  // as written: found in the one parse
  if (auto error = parse(body, json, "args", args)) return request_error{std::nullopt, "bad_frame", *error, true};
  if (!json.IsObject() || !json.HasMember("op") || !json["op"].IsString())
    return request_error{std::nullopt, "bad_frame", "a request is a JSON object with a string \"op\"", true};
  if (json.HasMember("id") && !json["id"].IsInt64())
    return refused(std::nullopt, op::none, "\"id\" must be an integer from -9223372036854775808 to 9223372036854775807");
  const request_id id = integer(json, "id");
  const std::string name = string_member(json, "op");

  if (name == "submit") return decode_submit(json, id, args, known_task);
  if (name == "status") return status_request{id};
  if (name == "tasks") return tasks_request{id};
  if (name == "metrics") return metrics_request{id};
  if (name == "kill") {
    const auto pid = integer(json, "pid");
    if (!pid || *pid <= 0 || *pid > 0x7fffffff) return refused(id, op::kill, "kill needs a \"pid\" from 1 to 2147483647");
    return kill_request{id, *pid};
  }
  if (name == "scale") {
    const auto n = integer(json, "workers");
    if (!n || *n < 1 || *n > 4096) return refused(id, op::scale, "scale needs \"workers\" from 1 to --max-workers");
    return scale_request{id, static_cast<unsigned>(*n)};
  }
  if (name == "stop") {
    if (json.HasMember("now") && !json["now"].IsBool())
      return refused(id, op::stop, "stop's \"now\" must be true or false");
    return stop_request{id, json.HasMember("now") && json["now"].GetBool()};
  }
  return refused(id, op::none, "unknown op '" + name + "'");
}

request_id id_of(const request& r) noexcept {
  return std::visit([](const auto& typed) { return typed.id; }, r);
}

namespace {

json_writer& opening(json_writer& out, std::string_view name) {
  return out.open().key("op").string(name);
}

std::string closing(json_writer& out, request_id id) {
  out.id(id).close();
  return out.text();
}

}  // namespace

std::string encode(const submit_request& r) {
  json_writer out;
  opening(out, "submit").key("task").string(r.task).key("args").raw(r.args).id(r.id);
  if (r.timeout) out.key("timeout_ms").number(static_cast<std::int64_t>(r.timeout->count()));
  if (r.retries) out.key("retries").number(*r.retries);
  if (r.with_worker) out.key("with_worker").boolean(true);
  out.close();
  return out.text();
}

std::string encode(const status_request& r) {
  json_writer out;
  return closing(opening(out, "status"), r.id);
}

std::string encode(const tasks_request& r) {
  json_writer out;
  return closing(opening(out, "tasks"), r.id);
}

std::string encode(const kill_request& r) {
  json_writer out;
  return closing(opening(out, "kill").key("pid").number(r.pid), r.id);
}

std::string encode(const scale_request& r) {
  json_writer out;
  return closing(opening(out, "scale").key("workers").number(r.workers), r.id);
}

std::string encode(const stop_request& r) {
  json_writer out;
  return closing(opening(out, "stop").key("now").boolean(r.now), r.id);
}

std::string encode(const metrics_request& r) {
  json_writer out;
  return closing(opening(out, "metrics"), r.id);
}

}  // namespace parallelcode::control
