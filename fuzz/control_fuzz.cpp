// The daemon's control socket, driven through the control layer the daemon itself
// calls: frames cut by cut_frame against the frame limit as server::read_client does,
// each body through decode_request (with has_task, as server::handle_frame passes it),
// each typed request written back by encode and decoded again to itself, and every
// answer the daemon could give it written by the answer encoders. A submit's job runs
// the way a worker runs it (json_call through the binary codec, run_json's invoke
// trampoline, from_json of the task's real argument type), with no pool and no fork;
// its result or error goes through result_answer or job_error_answer. Every answer
// must be one JSON object a client can parse, with "ok" and the request's id.
// What is left out needs a live pool or a socket: the pool's kill, resize and stats.

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

#include "answers.hpp"
#include "requests.hpp"

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

// What the client reads back: a frame holding one JSON object with a boolean "ok"
// and the request's id.
void check_answer(ctl::request_id rid, std::string_view body) {
  std::string frame;
  ctl::append_frame(frame, body);
  const ctl::frame_cut cut = ctl::cut_frame(frame, ctl::default_max_frame);
  if (cut.kind != ctl::frame_cut::whole || cut.length != body.size() || frame.size() != 4 + body.size()) std::abort();
  rapidjson::Document doc;
  if (ctl::parse(body, doc) || !doc.IsObject() || !doc.HasMember("ok") || !doc["ok"].IsBool()) std::abort();
  if (rid ? !doc.HasMember("id") || !doc["id"].IsInt64() || doc["id"].GetInt64() != *rid : doc.HasMember("id")) std::abort();
}

// pool.job(&run_json, json_call{task, args}): the supervisor encodes the call, a worker's
// invoke trampoline decodes and runs it, the supervisor decodes the string result.
std::string run_job(const ctl::submit_request& r) {
  pd::byte_buffer data, result;
  pd::encode(data, pc::json_call{r.task, r.args});
  try {
    pd::input_archive in(data.data(), data.size());
    pd::invoke<decltype(&pc::run_json), pc::json_call>(reinterpret_cast<std::uintptr_t>(&pc::run_json), in, result);
  } catch (const pd::codec_error& e) {
    return ctl::job_error_answer(r.id, pc::payload_error(e.what()));
  } catch (const std::exception& e) {
    return ctl::job_error_answer(r.id, pc::job_failed(typeid(e).name(), e.what()));
  }
  return ctl::result_answer(r.id, pd::decode<std::string>(result.data(), result.size()));
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

// The arguments a submit passes on are the text of the very member parsed, and one JSON text.
void check_args(std::string_view body, const ctl::submit_request& r) {
  rapidjson::Document request, args;
  if (ctl::parse(body, request) || ctl::parse(r.args, args)) std::abort();
  if (request.HasMember("args") ? !same_value(args, request["args"]) : r.args != "null") std::abort();
}

bool same_request(const ctl::request& a, const ctl::request& b) {
  if (a.index() != b.index() || ctl::id_of(a) != ctl::id_of(b)) return false;
  if (const auto* s = std::get_if<ctl::submit_request>(&a)) {
    const auto& t = std::get<ctl::submit_request>(b);
    return s->task == t.task && s->args == t.args && s->timeout == t.timeout && s->retries == t.retries;
  }
  if (const auto* k = std::get_if<ctl::kill_request>(&a)) return k->pid == std::get<ctl::kill_request>(b).pid;
  if (const auto* n = std::get_if<ctl::scale_request>(&a)) return n->workers == std::get<ctl::scale_request>(b).workers;
  if (const auto* s = std::get_if<ctl::stop_request>(&a)) return s->now == std::get<ctl::stop_request>(b).now;
  return true;
}

// Every answer the daemon could write about a job, with numbers taken from the request.
void check_job_errors(ctl::request_id rid, std::int64_t n) {
  const auto pid = static_cast<pid_t>(n & 0x7fffffff);
  const int sig = static_cast<int>(n & 0x7f);
  check_answer(rid, ctl::job_error_answer(rid, pc::worker_lost(pid, sig, sig ? -1 : static_cast<int>(n & 0xff))));
  check_answer(rid, ctl::job_error_answer(rid, pc::job_timeout(std::chrono::milliseconds(n), pid)));
  check_answer(rid, ctl::job_error_answer(rid, pc::job_cancelled("parallelcode: the pool was freed")));
}

// Returns false when the daemon would answer and close the connection.
bool handle_frame(std::string_view body) {
  const ctl::request r = ctl::decode_request(body, &pc::has_task);
  const ctl::request_id rid = ctl::id_of(r);
  if (const auto* refused = std::get_if<ctl::request_error>(&r)) {
    if (refused->closes && rid) std::abort();  // a frame that is no request has no id to repeat
    check_answer(rid, ctl::error_answer(*refused));
    return !refused->closes;
  }
  const std::string again = std::visit(
      [](const auto& typed) -> std::string {
        if constexpr (std::is_same_v<std::decay_t<decltype(typed)>, ctl::request_error>) std::abort();
        else return ctl::encode(typed);
      },
      r);
  if (!same_request(r, ctl::decode_request(again, &pc::has_task))) std::abort();

  if (const auto* job = std::get_if<ctl::submit_request>(&r)) {
    check_args(body, *job);
    check_answer(rid, run_job(*job));
    check_job_errors(rid, job->timeout ? job->timeout->count() : 9);
  } else if (std::holds_alternative<ctl::tasks_request>(r)) {
    check_answer(rid, ctl::tasks_answer(rid, pc::tasks()));
  } else if (std::holds_alternative<ctl::status_request>(r)) {
    pc::worker_info w;
    w.id = 0;
    w.pid = 4242;
    w.state = pc::worker_state::ready;
    check_answer(rid, ctl::status_answer(rid, {4240, false, pc::pool_stats{}, {w, pc::worker_info{}}}));
  } else {
    check_answer(rid, ctl::ok_answer(rid));  // kill, scale and stop, when the pool agrees
  }
  return true;
}

}  // namespace

// The quick readings the daemon and the CLI take must agree with the full ones: is_json
// with parse, the member found in parse's pass with member_text, plain_result with both.
void same_reading(const std::string& body) {
  rapidjson::Document doc;
  std::optional<std::string_view> args;
  const bool parsed = !ctl::parse(body, doc, "args", args);
  if (ctl::is_json(body) != parsed) std::abort();
  if (parsed && args != ctl::member_text(body, "args")) std::abort();
  if (const auto plain = ctl::plain_result(body)) {
    if (!parsed || !doc.IsObject() || !doc.HasMember("id") || !doc["id"].IsUint64() || doc["id"].GetUint64() != plain->id ||
        ctl::member_text(body, "result") != plain->result)
      std::abort();
  }
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // What one client sent, as server::read_client takes it apart.
  std::string in(reinterpret_cast<const char*>(data), size);
  for (;;) {
    const ctl::frame_cut cut = ctl::cut_frame(in, ctl::default_max_frame);
    if (cut.kind == ctl::frame_cut::bad_length) {
      check_answer(std::nullopt, ctl::error_answer(std::nullopt, "bad_frame", "frame length " + std::to_string(cut.length)));
      break;
    }
    if (cut.kind == ctl::frame_cut::partial) break;  // the rest has not come yet
    const std::string body = in.substr(4, cut.length);
    in.erase(0, 4 + std::size_t{cut.length});
    same_reading(body);
    if (!handle_frame(body)) break;
  }
  return 0;
}
