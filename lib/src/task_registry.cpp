#include <parallelcode/task.hpp>

#include <cxxabi.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <utility>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

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

// A C++ type's name as people write it: std::string, not std::__cxx11::basic_string<...>.
std::string type_name(const std::type_info& t) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> s(abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), std::free);
  std::string name = status == 0 && s ? std::string(s.get()) : std::string(t.name());
  for (const auto& [long_form, short_form] :
       {std::pair<std::string, std::string>{"std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >",
                                            "std::string"},
        {"(anonymous namespace)::", ""}}) {
    for (std::size_t at; (at = name.find(long_form)) != std::string::npos;) name.replace(at, long_form.size(), short_form);
  }
  return name;
}

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

const task_entry* find_task(std::string_view name) noexcept {
  const task_map* now = tasks_registry().current.load();
  if (!now) return nullptr;
  const auto it = now->find(name);
  return it == now->end() ? nullptr : &it->second;
}

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
  rapidjson::Document doc;
  doc.Parse(cereal_json.c_str(), cereal_json.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("value0"))
    throw std::runtime_error("cereal wrote something that is not {\"value0\": ...}");
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> writer(out);
  doc["value0"].Accept(writer);
  return std::string(out.GetString(), out.GetSize());
}

}  // namespace detail

std::vector<task_info> tasks() {
  std::vector<task_info> out;
  if (const auto* now = detail::tasks_registry().current.load())
    for (const auto& [name, entry] : *now)
      out.push_back({name, detail::type_name(*entry.argument), detail::type_name(*entry.result)});
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
