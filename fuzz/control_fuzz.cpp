// The daemon's control socket, driven the way server::read_client and
// server::handle_frame drive it: 4-byte length prefixes checked against the frame
// limit, each body through protocol.cpp's parser, and for a submit the named task's
// JSON arguments decoded the way a worker does it (json_call through the binary
// codec, run_json's invoke trampoline, from_json of the task's real argument type),
// with no pool and no fork. Every answer must be one JSON object a client can parse.
//
// server's loop and handle_frame need a live pool and sockets, so their dispatch is
// mirrored here; everything that parses or decodes is the product's own code.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <variant>
#include <vector>

#include "protocol.hpp"  // first: cereal's json.hpp makes RapidJSON's assertions throw

#include <cereal/types/variant.hpp>
#include <parallelcode/task.hpp>

namespace pc = parallelcode;
namespace pd = parallelcode::detail;
namespace ctl = parallelcode::control;

namespace fuzz {

template <class F>
auto decode_only(F) {
  using D = pd::task_argument_t<F>;
  using R = pd::job_result_t<F, D>;
  return [](const D&) {
    if constexpr (!std::is_void_v<R>) return R{};
  };
}

// sleep and fnv take as long as their arguments say: they keep their real argument and
// result types (so decoding is the daemon's) but return at once. The others run as they are.
template <class F>
bool add_task(std::string_view name, F fn) {
  if (name == "sleep" || name == "fnv") return pd::add_task(name, decode_only(fn));
  return pd::add_task(name, fn);
}

}  // namespace fuzz

// The daemon's built-in tasks and the example plugin's, their very sources, registered
// through the macro above.
#undef PARALLELCODE_TASK
#define PARALLELCODE_TASK(name, ...)                                                  \
  [[maybe_unused]] static const bool PARALLELCODE_TASK_JOIN(fuzz_task_, __COUNTER__) = \
      ::fuzz::add_task(name, __VA_ARGS__)
#include "builtin_tasks.cpp"
#include "plugin.cpp"

namespace {

// A plugin task of the kind users write: nested fields, maps, optionals, variants, flags.
struct item {
  std::string label;
  double weight = 0;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(label), CEREAL_NVP(weight));
  }
};

struct order {
  std::string customer;
  std::vector<item> items;
  std::map<std::string, std::int64_t> counts;
  std::optional<std::string> note;
  std::variant<std::int64_t, std::string> ref;
  std::uint32_t priority = 0;
  bool urgent = false;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(customer), CEREAL_NVP(items), CEREAL_NVP(counts), CEREAL_NVP(note), CEREAL_NVP(ref),
      CEREAL_NVP(priority), CEREAL_NVP(urgent));
  }
};

}  // namespace

PARALLELCODE_TASK("fuzz.order", [](const order& o) { return o; });

namespace {

using ctl::id_field;
using ctl::request_id;
using ctl::string_member;

// What the client reads back: a frame holding one JSON object with a boolean "ok"
// and the request's id.
void respond(std::optional<std::int64_t> rid, std::string_view body) {
  std::string frame;
  ctl::append_frame(frame, body);
  if (frame.size() != 4 + body.size() || ctl::frame_length(frame.data()) != body.size()) std::abort();
  rapidjson::Document doc;
  if (ctl::parse(body, doc) || !doc.IsObject() || !doc.HasMember("ok") || !doc["ok"].IsBool()) std::abort();
  if (rid && (!doc.HasMember("id") || !doc["id"].IsInt64() || doc["id"].GetInt64() != *rid)) std::abort();
}

// pool.job(&run_json, json_call{task, args}): the supervisor encodes the call, a worker's
// invoke trampoline decodes and runs it, the supervisor decodes the string result.
std::string run_job(std::optional<std::int64_t> rid, const std::string& task, const std::string& args) {
  pd::byte_buffer data, result;
  pd::encode(data, pc::json_call{task, args});
  try {
    pd::invoke<decltype(&pc::run_json), pc::json_call>(reinterpret_cast<std::uintptr_t>(&pc::run_json), data.data(),
                                                       data.size(), result);
  } catch (const pd::codec_error& e) {
    return ctl::error_response(rid, "payload_error", e.what());
  } catch (const std::exception& e) {
    return ctl::error_response(rid, "job_failed", e.what(), ",\"exception\":" + ctl::quote(typeid(e).name()));
  }
  const std::string text = pd::decode<std::string>(result.data(), result.size());
  rapidjson::Document check;
  if (auto bad = ctl::parse(text, check))
    return ctl::error_response(rid, "payload_error", "the task answered something that is not JSON: " + *bad);
  return "{" + id_field(rid) + "\"ok\":true,\"result\":" + text + "}";
}

// a and b alike member by member in order (RapidJSON's == finds members by name, so
// an object with a key twice never equals itself).
bool same_value(const rapidjson::Value& a, const rapidjson::Value& b) {
  if (a.GetType() != b.GetType()) return false;
  if (a.IsObject()) {
    if (a.MemberCount() != b.MemberCount()) return false;
    for (auto i = a.MemberBegin(), j = b.MemberBegin(); i != a.MemberEnd(); ++i, ++j)
      if (i->name != j->name || !same_value(i->value, j->value)) return false;
    return true;
  }
  if (a.IsArray()) {
    if (a.Size() != b.Size()) return false;
    for (rapidjson::SizeType k = 0; k < a.Size(); ++k)
      if (!same_value(a[k], b[k])) return false;
    return true;
  }
  return a == b;
}

void submit(const rapidjson::Value& request, std::string_view body, std::optional<std::int64_t> rid) {
  if (!request.HasMember("task") || !request["task"].IsString())
    return respond(rid, ctl::error_response(rid, "bad_request", "submit needs a string \"task\""));
  const std::string task = string_member(request, "task");
  if (!pc::has_task(task))
    return respond(rid, ctl::error_response(rid, "unknown_task", "no task is named '" + task + "'"));
  if (request.HasMember("timeout_ms") &&
      (!request["timeout_ms"].IsInt64() || request["timeout_ms"].GetInt64() < 0 ||
       request["timeout_ms"].GetInt64() > ctl::longest_timeout_ms))
    return respond(rid, ctl::error_response(rid, "bad_request", "\"timeout_ms\" out of range"));
  if (request.HasMember("retries") && (!request["retries"].IsUint() || request["retries"].GetUint() > 100))
    return respond(rid, ctl::error_response(rid, "bad_request", "\"retries\" must be 0 to 100"));
  // As the daemon does: the arguments as the client wrote them.
  const auto text = ctl::member_text(body, "args");
  if (request.HasMember("args") != text.has_value()) std::abort();
  const std::string args = text ? std::string(*text) : "null";
  if (text) {
    rapidjson::Document same;  // the text found is the value parsed, and a whole JSON text
    if (ctl::parse(args, same) || !same_value(same, request["args"])) std::abort();
  }
  respond(rid, run_job(rid, task, args));
}

// Returns false when the daemon would answer and close the connection.
bool handle_frame(std::string_view body) {
  rapidjson::Document request;
  if (auto error = ctl::parse(body, request)) {
    respond(std::nullopt, ctl::error_response(std::nullopt, "bad_frame", *error));
    return false;
  }
  if (!request.IsObject() || !request.HasMember("op") || !request["op"].IsString()) {
    respond(std::nullopt, ctl::error_response(std::nullopt, "bad_frame", "a request is a JSON object with a string \"op\""));
    return false;
  }
  std::optional<std::int64_t> rid;
  try {
    rid = request_id(request);
  } catch (const std::invalid_argument& e) {
    respond(std::nullopt, ctl::error_response(std::nullopt, "bad_request", e.what()));
    return true;
  }
  const std::string op = string_member(request, "op");
  auto number = [&](const char* key) -> std::optional<std::int64_t> {
    if (!request.HasMember(key) || !request[key].IsInt64()) return std::nullopt;
    return request[key].GetInt64();
  };
  const std::string ok = "{" + id_field(rid) + "\"ok\":true}";
  if (op == "submit") {
    submit(request, body, rid);
  } else if (op == "tasks") {
    std::string list;
    for (const auto& t : pc::tasks())
      list += (list.empty() ? "" : ",") + std::string("{\"name\":") + ctl::quote(t.name) +
              ",\"argument\":" + ctl::quote(t.argument) + ",\"result\":" + ctl::quote(t.result) + "}";
    respond(rid, "{" + id_field(rid) + "\"ok\":true,\"tasks\":[" + list + "]}");
  } else if (op == "kill") {
    const auto pid = number("pid");
    respond(rid, !pid || *pid <= 0 || *pid > 0x7fffffff
                     ? ctl::error_response(rid, "bad_request", "kill needs a \"pid\" from 1 to 2147483647")
                     : ctl::error_response(rid, "not_a_worker", "pid " + std::to_string(*pid) + " is not a worker"));
  } else if (op == "scale") {
    const auto n = number("workers");
    respond(rid, !n || *n < 1 || *n > 4096 ? ctl::error_response(rid, "bad_request", "scale needs \"workers\"") : ok);
  } else if (op == "stop") {
    respond(rid, request.HasMember("now") && !request["now"].IsBool()
                     ? ctl::error_response(rid, "bad_request", "stop's \"now\" must be true or false")
                     : ok);
  } else if (op == "status") {
    respond(rid, ok);  // the pool's numbers only: nothing of the request but its id
  } else {
    respond(rid, ctl::error_response(rid, "bad_request", "unknown op '" + op + "'"));
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // What one client sent, as server::read_client takes it apart.
  std::string in(reinterpret_cast<const char*>(data), size);
  while (in.size() >= 4) {
    const std::uint32_t n = ctl::frame_length(in.data());
    if (n == 0 || n > ctl::default_max_frame) {
      respond(std::nullopt, ctl::error_response(std::nullopt, "bad_frame", "frame length " + std::to_string(n)));
      break;
    }
    if (in.size() < 4 + std::size_t{n}) break;  // the rest has not come yet
    const std::string body = in.substr(4, n);
    in.erase(0, 4 + std::size_t{n});
    if (!handle_frame(body)) break;
  }
  return 0;
}
