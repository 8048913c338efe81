#pragma once

// Tasks called with JSON (the daemon's clients): the arguments decoded from JSON
// into the task's argument type by field name, the result encoded back as
// compact JSON. Both keep strings whole and doubles exact (task_registry.cpp).

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <cereal/archives/json.hpp>

#include <parallelcode/detail/codec.hpp>
#include <parallelcode/detail/invoke.hpp>
#include <parallelcode/export.hpp>

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

// cereal's JSONInputArchive, reading the same layout (fields by name, containers as
// arrays) but from text parsed with lengths and exact numbers: cereal's cuts a
// string at its first NUL and refuses a number past a double's range as not JSON.
// Throws std::runtime_error naming what does not fit.
class PARALLELCODE_API json_input_archive : public cereal::InputArchive<json_input_archive>, public cereal::traits::TextArchive {
 public:
  explicit json_input_archive(std::string_view text);
  json_input_archive(const json_input_archive&) = delete;
  json_input_archive& operator=(const json_input_archive&) = delete;

  void set_next_name(const char* name) noexcept { next_name_ = name; }
  void start_node();
  void finish_node();
  void load_size(cereal::size_type& size);
  void load_value(std::nullptr_t&);
  void load_value(bool& value);
  void load_value(std::int64_t& value);
  void load_value(std::uint64_t& value);
  void load_value(double& value);
  void load_value(std::string& value);

  template <class T>
  void load_number(T& value) {
    if constexpr (written_as_text_v<T>) {
      // cereal's JSON archive writes these as strings: those read back, as numbers do.
      if (current().IsString()) {
        std::string text;
        load_value(text);
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (error != std::errc() || end != text.data() + text.size()) not_a_number(text);
        return;
      }
    }
    if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, double>) {
      load_value(value);
    } else if constexpr (std::is_floating_point_v<T>) {
      double d = 0;
      load_value(d);
      if (sizeof(T) < sizeof(double) && (d > std::numeric_limits<T>::max() || d < -std::numeric_limits<T>::max()))
        out_of_range(d, "a float");
      value = static_cast<T>(d);
    } else if constexpr (std::is_signed_v<T>) {
      std::int64_t i = 0;
      load_value(i);
      constexpr std::int64_t min = std::numeric_limits<T>::min(), max = std::numeric_limits<T>::max();
      if (i < min || i > max) out_of_range(std::to_string(i), std::to_string(min) + " to " + std::to_string(max));
      value = static_cast<T>(i);
    } else {
      std::uint64_t u = 0;
      load_value(u);
      constexpr std::uint64_t max = std::numeric_limits<T>::max();
      if (u > max) out_of_range(std::to_string(u), "0 to " + std::to_string(max));
      value = static_cast<T>(u);
    }
  }

 private:
  struct level {
    const rapidjson::Value* node;  // the array or object being read; nullptr: the root, alone
    std::size_t at = 0;
  };

  std::size_t size_of(const level& l) const;
  const rapidjson::Value& value_at(const level& l, std::size_t k) const;
  const rapidjson::Value& current();  // the value to load next: by name if one was given
  std::string where(bool just_loaded) const;
  [[noreturn]] void mismatch(const rapidjson::Value& v, const char* wanted) const;
  [[noreturn]] void out_of_range(double d, const char* type) const;
  [[noreturn]] void out_of_range(const std::string& number, const std::string& range) const;
  [[noreturn]] void not_a_number(const std::string& text) const;

  template <class T>
  static constexpr bool written_as_text_v =
      (std::is_same_v<T, long long> && !std::is_same_v<long long, std::int64_t>) ||
      (std::is_same_v<T, unsigned long long> && !std::is_same_v<unsigned long long, std::uint64_t>) ||
      std::is_same_v<T, long double>;

  rapidjson::Document doc_;
  std::vector<level> levels_;
  const char* next_name_ = nullptr;
};

// cereal's hooks for json_input_archive, as cereal/archives/json.hpp has them for its own.
template <class T>
void prologue(json_input_archive&, const cereal::NameValuePair<T>&) {}
template <class T>
void epilogue(json_input_archive&, const cereal::NameValuePair<T>&) {}
template <class T>
void prologue(json_input_archive&, const cereal::DeferredData<T>&) {}
template <class T>
void epilogue(json_input_archive&, const cereal::DeferredData<T>&) {}
template <class T>
void prologue(json_input_archive&, const cereal::SizeTag<T>&) {}
template <class T>
void epilogue(json_input_archive&, const cereal::SizeTag<T>&) {}
inline void prologue(json_input_archive&, const std::nullptr_t&) {}
inline void epilogue(json_input_archive&, const std::nullptr_t&) {}
template <class T, cereal::traits::EnableIf<std::is_arithmetic<T>::value> = cereal::traits::sfinae>
void prologue(json_input_archive&, const T&) {}
template <class T, cereal::traits::EnableIf<std::is_arithmetic<T>::value> = cereal::traits::sfinae>
void epilogue(json_input_archive&, const T&) {}
template <class C, class Traits, class Alloc>
void prologue(json_input_archive&, const std::basic_string<C, Traits, Alloc>&) {}
template <class C, class Traits, class Alloc>
void epilogue(json_input_archive&, const std::basic_string<C, Traits, Alloc>&) {}

// Every other type but minimal ones is a node of its own: an object or an array.
template <class T>
constexpr bool json_node_v =
    !std::is_arithmetic_v<T> &&
    !cereal::traits::has_minimal_base_class_serialization<T, cereal::traits::has_minimal_input_serialization,
                                                          json_input_archive>::value &&
    !cereal::traits::has_minimal_input_serialization<T, json_input_archive>::value;
template <class T, cereal::traits::EnableIf<json_node_v<T>> = cereal::traits::sfinae>
void prologue(json_input_archive& ar, const T&) {
  ar.start_node();
}
template <class T, cereal::traits::EnableIf<json_node_v<T>> = cereal::traits::sfinae>
void epilogue(json_input_archive& ar, const T&) {
  ar.finish_node();
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(json_input_archive& ar, cereal::NameValuePair<T>& t) {
  ar.set_next_name(t.name);
  ar(t.value);
}
inline void CEREAL_LOAD_FUNCTION_NAME(json_input_archive& ar, std::nullptr_t& t) { ar.load_value(t); }
template <class T, cereal::traits::EnableIf<std::is_arithmetic<T>::value> = cereal::traits::sfinae>
void CEREAL_LOAD_FUNCTION_NAME(json_input_archive& ar, T& t) {
  ar.load_number(t);
}
template <class Traits, class Alloc>
void CEREAL_LOAD_FUNCTION_NAME(json_input_archive& ar, std::basic_string<char, Traits, Alloc>& s) {
  std::string value;
  ar.load_value(value);
  s.assign(value.data(), value.size());
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(json_input_archive& ar, cereal::SizeTag<T>& tag) {
  cereal::size_type size = 0;
  ar.load_size(size);
  tag.size = static_cast<std::remove_reference_t<T>>(size);
}

// cereal writes {"value0": ...} across several lines: the value alone, on one, each
// double shortest; throws, saying what JSON cannot hold (NaN, inf, a string not UTF-8).
PARALLELCODE_API std::string compact_json_value(const std::string& cereal_json);
// A string as cereal and then compact_json_value would write it, without either; throws as they do.
PARALLELCODE_API std::string json_string(std::string_view s);

// The integers cereal writes as plain JSON numbers: not a char type (text to it), nor
// long long (a string, "5", where long is 64 bits).
template <class T>
inline constexpr bool json_integer_v =
    std::is_same_v<T, short> || std::is_same_v<T, unsigned short> || std::is_same_v<T, int> ||
    std::is_same_v<T, unsigned> || std::is_same_v<T, long> || std::is_same_v<T, unsigned long>;

template <class T>
T from_json(std::string_view text) {
  if constexpr (std::is_same_v<T, json>) {
    return json{std::string(text)};
  } else {
    try {
      json_input_archive ar(text);
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
  } else if constexpr (std::is_same_v<T, bool>) {  // the commonest results, written as cereal would, without it
    return value ? "true" : "false";
  } else if constexpr (json_integer_v<T>) {
    return std::to_string(value);
  } else {
    try {
      if constexpr (std::is_same_v<T, std::string>) {
        return json_string(value);
      } else {
        std::ostringstream out;
        {
          cereal::JSONOutputArchive ar(out, cereal::JSONOutputArchive::Options::NoIndent());
          ar(cereal::make_nvp("value0", value));
        }
        return compact_json_value(out.str());
      }
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

// cereal checks a type's load_minimal against the save_minimal of the archive's output twin.
template <>
struct cereal::traits::detail::get_output_from_input<parallelcode::detail::json_input_archive> {
  using type = cereal::JSONOutputArchive;
};
