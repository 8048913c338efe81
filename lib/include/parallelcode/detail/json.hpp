#pragma once

// Tasks called with JSON (the daemon's clients): the arguments decoded from JSON
// into the task's argument type by field name, the result encoded back as
// compact JSON, both through cereal's JSON archive.

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <cereal/archives/json.hpp>

#include <parallelcode/detail/codec.hpp>
#include <parallelcode/detail/invoke.hpp>

namespace parallelcode {

// JSON text passed through as it is: a task taking json gets its arguments
// unparsed; one returning json answers with that text (which must be JSON).
struct json {
  std::string text;
  template <class A>
  void serialize(A& a) {
    a(text);
  }
};

namespace detail {

// cereal writes {"value0": ...} across several lines: the value alone, on one.
std::string compact_json_value(const std::string& cereal_json);

template <class T>
T from_json(std::string_view text) {
  if constexpr (std::is_same_v<T, json>) {
    return json{std::string(text)};
  } else {
    try {
      std::istringstream in("{\"value0\":" + std::string(text) + "}");
      cereal::JSONInputArchive ar(in);
      T value{};
      ar(value);
      return value;
    } catch (const std::exception& e) {
      throw codec_error(std::string("the arguments do not fit the task: ") + e.what());
    }
  }
}

template <class T>
std::string to_json(const T& value) {
  if constexpr (std::is_same_v<T, json>) {
    return value.text;
  } else {
    try {
      std::ostringstream out;
      {
        cereal::JSONOutputArchive ar(out, cereal::JSONOutputArchive::Options::NoIndent());
        ar(cereal::make_nvp("value0", value));
      }
      return compact_json_value(out.str());
    } catch (const std::exception& e) {
      throw codec_error(std::string("the result cannot be written as JSON: ") + e.what());
    }
  }
}

template <class F, class D>
std::string invoke_json(std::uintptr_t fn, std::string_view args) {
  D arg = from_json<D>(args);
  if constexpr (std::is_void_v<job_result_t<F, D>>) {
    call<F>(fn, std::move(arg));
    return "null";
  } else {
    return to_json(job_result_t<F, D>(call<F>(fn, std::move(arg))));
  }
}

}  // namespace detail
}  // namespace parallelcode
