#include <parallelcode/task.hpp>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "demangle.hpp"
#include "json_text.hpp"

namespace parallelcode {

namespace detail {

namespace {

using task_map = std::map<std::string, task_entry, std::less<>>;

// Copy on write: a registration publishes a new map; readers never lock. Old maps
// are kept, as a reader may still be looking at one.
struct registry {
  std::mutex writing;
  std::vector<std::unique_ptr<const task_map>> versions;
  std::atomic<const task_map*> current{nullptr};
  std::vector<std::string> conflicts;
};

registry& tasks_registry() {
  static registry r;
  return r;
}

std::string type_name(const std::type_info& t) { return demangle(t.name()); }

}  // namespace

bool register_task(std::string_view name, const task_entry& entry) noexcept {
  try {
    registry& r = tasks_registry();
    std::lock_guard lock(r.writing);
    const task_map* now = r.current.load();
    if (now && now->count(name)) {
      r.conflicts.emplace_back(name);
      return false;
    }
    auto next = std::make_unique<task_map>(now ? *now : task_map{});
    next->emplace(std::string(name), entry);
    r.current.store(next.get());
    r.versions.push_back(std::move(next));
    return true;
  } catch (...) {
    return false;
  }
}

namespace {

const task_entry* find_task(std::string_view name) noexcept {
  const task_map* now = tasks_registry().current.load();
  if (!now) return nullptr;
  const auto it = now->find(name);
  return it == now->end() ? nullptr : &it->second;
}

}  // namespace

const task_entry& checked_task(std::string_view name, const std::type_info& argument, const std::type_info& result) {
  const task_entry* entry = find_task(name);
  if (!entry) throw std::invalid_argument("parallelcode: no task is registered as '" + std::string(name) + "'");
  if (*entry->argument != argument || *entry->result != result)
    throw std::invalid_argument("parallelcode: task '" + std::string(name) + "' takes " + type_name(*entry->argument) +
                                " and returns " + type_name(*entry->result) + ", not " + type_name(argument) +
                                " and " + type_name(result));
  return *entry;
}

std::string compact_json_value(const std::string& cereal_json) {
  // cereal writes NaN and Infinity, and a string's bytes as they are: the writer refuses them, saying which.
  rapidjson::Document doc;
  if (json_text::read(cereal_json, doc, {.nan_and_inf = true, .validate_utf8 = false}) || !doc.IsObject() ||
      !doc.HasMember("value0"))
    throw std::runtime_error("cereal wrote something that is not {\"value0\": ...}");
  return json_text::write(doc["value0"]);
}

std::string json_string(std::string_view s) {
  rapidjson::StringBuffer out;
  json_text::exact_writer writer(out);
  if (s.size() > std::numeric_limits<rapidjson::SizeType>::max())
    throw std::invalid_argument("a string of " + std::to_string(s.size()) + " bytes is more than JSON text here holds");
  if (!writer.String(s.data(), static_cast<rapidjson::SizeType>(s.size()))) throw std::invalid_argument(writer.refusal());
  return {out.GetString(), out.GetSize()};
}

namespace {

std::string kind_of(const rapidjson::Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsBool()) return v.GetBool() ? "true" : "false";
  if (v.IsString()) return "a string";
  if (v.IsObject()) return "an object";
  if (v.IsArray()) return "an array";
  if (v.IsDouble() && std::isinf(v.GetDouble())) return "a number out of the range of a double";
  return "the number " + json_text::write(v);
}

std::string_view name_of(const rapidjson::Value::Member& m) { return {m.name.GetString(), m.name.GetStringLength()}; }

}  // namespace

json_input_archive::json_input_archive(std::string_view text) : cereal::InputArchive<json_input_archive>(this) {
  if (auto bad = json_text::read(text, doc_, {})) throw std::runtime_error(*bad);
  levels_.push_back({nullptr});
}

std::size_t json_input_archive::size_of(const level& l) const {
  return !l.node ? 1 : l.node->IsArray() ? l.node->Size() : l.node->MemberCount();
}

const rapidjson::Value& json_input_archive::value_at(const level& l, std::size_t k) const {
  if (!l.node) return doc_;
  return l.node->IsArray() ? (*l.node)[static_cast<rapidjson::SizeType>(k)] : l.node->MemberBegin()[k].value;
}

const rapidjson::Value& json_input_archive::current() {
  level& l = levels_.back();
  const std::size_t size = size_of(l);
  const bool object = l.node && l.node->IsObject();
  if (const char* name = std::exchange(next_name_, nullptr)) {
    if (!object)
      throw std::runtime_error(where(false) + "expected an object with \"" + name + "\", got " +
                               kind_of(l.node ? *l.node : doc_));
    // Fields in any order: the next one if it is the one asked for, else the one of that name.
    const auto members = l.node->MemberBegin();
    if (l.at >= size || name_of(members[l.at]) != name) {
      std::size_t i = 0;
      while (i < size && name_of(members[i]) != name) ++i;
      if (i == size) throw std::runtime_error(where(false) + "\"" + name + "\" is missing");
      l.at = i;
    }
  }
  if (l.at >= size)
    throw std::runtime_error(where(false) + (object ? "an object has fewer fields than the type needs"
                                                    : "an array has fewer elements than the type needs"));
  return value_at(l, l.at);
}

// "items[2].label: ", the path to the value to load next (or just loaded); nothing at the top.
std::string json_input_archive::where(bool just_loaded) const {
  std::string path;
  for (std::size_t k = 1; k < levels_.size(); ++k) {
    const level& l = levels_[k];
    const std::size_t at = k + 1 == levels_.size() && just_loaded ? l.at - 1 : l.at;
    if (at >= size_of(l)) break;
    if (l.node->IsObject())
      path += (path.empty() ? "" : ".") + std::string(name_of(l.node->MemberBegin()[at]));
    else
      path += "[" + std::to_string(at) + "]";
  }
  return path.empty() ? "" : path + ": ";
}

void json_input_archive::mismatch(const rapidjson::Value& v, const char* wanted) const {
  throw std::runtime_error(where(false) + "expected " + wanted + ", got " + kind_of(v));
}

void json_input_archive::out_of_range(double d, const char* type) const {
  throw std::runtime_error(where(true) + json_text::write(rapidjson::Value(d)) + " is out of the range of " + type);
}

void json_input_archive::out_of_range(const std::string& number, const std::string& range) const {
  throw std::runtime_error(where(true) + number + " is out of the range " + range);
}

void json_input_archive::not_a_number(const std::string& text) const {
  const rapidjson::Value string(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  throw std::runtime_error(where(true) + "expected a number, got the string " + json_text::write(string));
}

void json_input_archive::start_node() {
  const rapidjson::Value& v = current();
  if (!v.IsArray() && !v.IsObject()) mismatch(v, "an object or an array");
  levels_.push_back({&v});
}

void json_input_archive::finish_node() {
  levels_.pop_back();
  ++levels_.back().at;
}

void json_input_archive::load_size(cereal::size_type& size) {
  const level& l = levels_.back();
  if (!l.node || !l.node->IsArray())
    throw std::runtime_error(where(false) + "expected an array, got " + kind_of(l.node ? *l.node : doc_));
  size = l.node->Size();
}

void json_input_archive::load_value(std::nullptr_t&) {
  if (!current().IsNull()) mismatch(current(), "null");
  ++levels_.back().at;
}

void json_input_archive::load_value(bool& value) {
  const rapidjson::Value& v = current();
  if (!v.IsBool()) mismatch(v, "true or false");
  value = v.GetBool();
  ++levels_.back().at;
}

void json_input_archive::load_value(std::int64_t& value) {
  const rapidjson::Value& v = current();
  if (v.IsUint64() && !v.IsInt64()) {
    ++levels_.back().at;
    out_of_range(std::to_string(v.GetUint64()), std::to_string(std::numeric_limits<std::int64_t>::min()) + " to " +
                                                    std::to_string(std::numeric_limits<std::int64_t>::max()));
  }
  if (!v.IsInt64()) mismatch(v, "an integer");
  value = v.GetInt64();
  ++levels_.back().at;
}

void json_input_archive::load_value(std::uint64_t& value) {
  const rapidjson::Value& v = current();
  if (v.IsInt64() && !v.IsUint64()) {
    ++levels_.back().at;
    out_of_range(std::to_string(v.GetInt64()), "0 to " + std::to_string(std::numeric_limits<std::uint64_t>::max()));
  }
  if (!v.IsUint64()) mismatch(v, "an integer from 0 up");
  value = v.GetUint64();
  ++levels_.back().at;
}

void json_input_archive::load_value(double& value) {
  const rapidjson::Value& v = current();
  if (!v.IsNumber()) mismatch(v, "a number");
  // Only a number past a double's range reads as infinite: JSON has no infinity.
  if (std::isinf(v.GetDouble())) throw std::runtime_error(where(false) + "a number out of the range of a double");
  value = v.GetDouble();
  ++levels_.back().at;
}

void json_input_archive::load_value(std::string& value) {
  const rapidjson::Value& v = current();
  if (!v.IsString()) mismatch(v, "a string");
  value.assign(v.GetString(), v.GetStringLength());
  ++levels_.back().at;
}

}  // namespace detail

std::vector<task_info> tasks() {
  std::vector<task_info> out;
  if (const auto* now = detail::tasks_registry().current.load())
    for (const auto& [name, entry] : *now)
      out.push_back({name, detail::type_name(*entry.argument), detail::type_name(*entry.result), entry.argument_schema(),
                     entry.result_schema()});
  return out;
}

bool has_task(std::string_view name) noexcept { return detail::find_task(name) != nullptr; }

std::vector<std::string> task_conflicts() {
  auto& r = detail::tasks_registry();
  std::lock_guard lock(r.writing);
  return r.conflicts;
}

std::string run_json(const json_call& call) {
  const detail::task_entry* entry = detail::find_task(call.task);
  if (!entry) throw std::invalid_argument("unknown task '" + call.task + "'");
  return entry->invoke_json(entry->fn, call.args);
}

}  // namespace parallelcode
