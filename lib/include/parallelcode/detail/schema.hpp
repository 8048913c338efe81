#pragma once

// What JSON a task takes and returns, as a JSON Schema: a cereal output archive that
// walks a default value the way the JSON codec (json.hpp) would read one, and notes
// each field's name and type instead of its value. An empty container says nothing of
// its elements, so the standard containers are described from one default element.

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include <cereal/cereal.hpp>

#include <parallelcode/export.hpp>

namespace parallelcode {
struct json;
}

namespace parallelcode::detail {

class PARALLELCODE_API schema_archive : public cereal::OutputArchive<schema_archive>, public cereal::traits::TextArchive {
 public:
  enum class shape { record, array, alternatives };
  enum class leaf_kind { boolean, string, null, any };

  schema_archive();
  ~schema_archive();
  schema_archive(const schema_archive&) = delete;
  schema_archive& operator=(const schema_archive&) = delete;

  void set_next_name(const char* name) noexcept { next_name_ = name; }
  void start_node();
  void finish_node();
  void make_array(std::size_t fixed = 0);  // the node holds like elements (fixed: exactly that many)
  void make_alternatives();                // each of the node's children is a form the value may take
  void last_is_optional();                 // the node's last field may be left out
  void leaf(leaf_kind kind);
  void integer(bool is_signed, std::size_t bytes);
  void number(std::size_t bytes);

  // Whether elements of T may be described here: not while describing one already (a
  // recursive type), which stops at "any JSON".
  bool enter(const std::type_info& t);
  void leave();

  std::string text() const;  // the schema of the one value saved

  struct node;  // schema.cpp's

 private:
  void add_leaf(std::string schema);

  std::unique_ptr<std::vector<node>> stack_;
  std::vector<const std::type_info*> expanding_;
  const char* next_name_ = nullptr;
};

// One default T, described as the value saved next (a container's elements, say).
template <class T>
void describe_element(schema_archive& ar) {
  if constexpr (std::is_default_constructible_v<T>) {
    if (ar.enter(typeid(T))) {
      const T element{};
      ar(element);
      ar.leave();
      return;
    }
  }
  ar.leaf(schema_archive::leaf_kind::any);
}

// cereal's hooks, as cereal/archives/json.hpp has them for its JSON output archive.
template <class T>
void prologue(schema_archive&, const cereal::NameValuePair<T>&) {}
template <class T>
void epilogue(schema_archive&, const cereal::NameValuePair<T>&) {}
template <class T>
void prologue(schema_archive&, const cereal::DeferredData<T>&) {}
template <class T>
void epilogue(schema_archive&, const cereal::DeferredData<T>&) {}
template <class T>
void prologue(schema_archive&, const cereal::SizeTag<T>&) {}
template <class T>
void epilogue(schema_archive&, const cereal::SizeTag<T>&) {}
inline void prologue(schema_archive&, const std::nullptr_t&) {}
inline void epilogue(schema_archive&, const std::nullptr_t&) {}
template <class T, cereal::traits::EnableIf<std::is_arithmetic<T>::value> = cereal::traits::sfinae>
void prologue(schema_archive&, const T&) {}
template <class T, cereal::traits::EnableIf<std::is_arithmetic<T>::value> = cereal::traits::sfinae>
void epilogue(schema_archive&, const T&) {}
template <class C, class Traits, class Alloc>
void prologue(schema_archive&, const std::basic_string<C, Traits, Alloc>&) {}
template <class C, class Traits, class Alloc>
void epilogue(schema_archive&, const std::basic_string<C, Traits, Alloc>&) {}

template <class T>
constexpr bool schema_node_v =
    !std::is_arithmetic_v<T> &&
    !cereal::traits::has_minimal_base_class_serialization<T, cereal::traits::has_minimal_output_serialization,
                                                          schema_archive>::value &&
    !cereal::traits::has_minimal_output_serialization<T, schema_archive>::value;
template <class T, cereal::traits::EnableIf<schema_node_v<T>> = cereal::traits::sfinae>
void prologue(schema_archive& ar, const T&) {
  ar.start_node();
}
template <class T, cereal::traits::EnableIf<schema_node_v<T>> = cereal::traits::sfinae>
void epilogue(schema_archive& ar, const T&) {
  ar.finish_node();
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const cereal::NameValuePair<T>& t) {
  ar.set_next_name(t.name);
  ar(t.value);
}
inline void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::nullptr_t&) {
  ar.leaf(schema_archive::leaf_kind::null);
}
template <class T, cereal::traits::EnableIf<std::is_arithmetic<T>::value> = cereal::traits::sfinae>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const T&) {
  if constexpr (std::is_same_v<T, bool>)
    ar.leaf(schema_archive::leaf_kind::boolean);
  else if constexpr (std::is_floating_point_v<T>)
    ar.number(sizeof(T));
  else
    ar.integer(std::is_signed_v<T>, sizeof(T));
}
template <class Traits, class Alloc>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::basic_string<char, Traits, Alloc>&) {
  ar.leaf(schema_archive::leaf_kind::string);
}
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const cereal::SizeTag<T>&) {
  ar.make_array();
}

// The standard containers, each from one element (more specialized than cereal's own).
template <class T, class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::vector<T, A>&) {
  ar.make_array();
  describe_element<T>(ar);
}
template <class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::vector<bool, A>&) {
  ar.make_array();
  describe_element<bool>(ar);
}

template <class T, class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::deque<T, A>&) {
  ar.make_array();
  describe_element<T>(ar);
}
template <class T, class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::list<T, A>&) {
  ar.make_array();
  describe_element<T>(ar);
}
template <class K, class C, class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::set<K, C, A>&) {
  ar.make_array();
  describe_element<K>(ar);
}
template <class K, class C, class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::multiset<K, C, A>&) {
  ar.make_array();
  describe_element<K>(ar);
}
template <class K, class H, class E, class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::unordered_set<K, H, E, A>&) {
  ar.make_array();
  describe_element<K>(ar);
}
template <class T, std::size_t N>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::array<T, N>&) {
  ar.make_array(N);
  describe_element<T>(ar);
}

// A map is an array of {"key": ..., "value": ...}, as cereal writes one.
template <class K, class V>
struct map_entry {
  K key{};
  V value{};
  template <class A>
  void serialize(A& a) {
    a(cereal::make_nvp("key", key), cereal::make_nvp("value", value));
  }
};
template <class K, class V, class C, class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::map<K, V, C, A>&) {
  ar.make_array();
  describe_element<map_entry<K, V>>(ar);
}
template <class K, class V, class C, class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::multimap<K, V, C, A>&) {
  ar.make_array();
  describe_element<map_entry<K, V>>(ar);
}
template <class K, class V, class H, class E, class A>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::unordered_map<K, V, H, E, A>&) {
  ar.make_array();
  describe_element<map_entry<K, V>>(ar);
}

// cereal writes an optional as {"nullopt": true} or {"nullopt": false, "data": ...}.
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::optional<T>&) {
  ar(cereal::make_nvp("nullopt", false));
  ar.set_next_name("data");
  describe_element<T>(ar);
  ar.last_is_optional();
}

// And a variant as {"index": i, "data": the i-th alternative}.
template <class T, class... Ts>
void CEREAL_SAVE_FUNCTION_NAME(schema_archive& ar, const std::variant<T, Ts...>&) {
  ar(cereal::make_nvp("index", std::int32_t{0}));
  ar.set_next_name("data");
  ar.start_node();
  ar.make_alternatives();
  describe_element<T>(ar);
  (describe_element<Ts>(ar), ...);
  ar.finish_node();
}

// The schema of T's JSON, "{}" (any JSON) where it cannot be worked out.
template <class T>
std::string json_schema() noexcept {
  try {
    schema_archive ar;
    if constexpr (std::is_void_v<T>)
      ar.leaf(schema_archive::leaf_kind::null);
    else if constexpr (std::is_same_v<T, json>)
      ar.leaf(schema_archive::leaf_kind::any);
    else
      describe_element<T>(ar);
    return ar.text();
  } catch (...) {
    return "{}";
  }
}

}  // namespace parallelcode::detail
