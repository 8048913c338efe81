#include <parallelcode/detail/schema.hpp>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "json_text.hpp"

namespace parallelcode::detail {

struct schema_archive::node {
  const char* name = nullptr;
  shape form = shape::record;
  std::size_t fixed = 0;
  bool optional = false;
  std::string leaf;  // the schema of a leaf, as JSON text; empty for a node
  std::vector<node> children;
};

namespace {

using writer = rapidjson::Writer<rapidjson::StringBuffer>;

void key(writer& w, std::string_view k) { w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size())); }

template <class Int>
std::string integer_schema(const char* format) {
  return std::string(R"({"type":"integer","format":")") + format + R"(","minimum":)" +
         std::to_string(std::numeric_limits<Int>::min()) + R"(,"maximum":)" +
         std::to_string(std::numeric_limits<Int>::max()) + "}";
}

}  // namespace

schema_archive::schema_archive() : cereal::OutputArchive<schema_archive>(this), stack_(std::make_unique<std::vector<node>>(1)) {}

schema_archive::~schema_archive() = default;

void schema_archive::start_node() {
  stack_->emplace_back();
  stack_->back().name = std::exchange(next_name_, nullptr);
}

void schema_archive::add_leaf(std::string schema) {
  node n;
  n.name = std::exchange(next_name_, nullptr);
  n.leaf = std::move(schema);
  stack_->back().children.push_back(std::move(n));
}

void schema_archive::finish_node() {
  if (stack_->size() < 2) throw std::logic_error("schema_archive: a node finished that was never started");
  node done = std::move(stack_->back());
  stack_->pop_back();
  stack_->back().children.push_back(std::move(done));
}

void schema_archive::make_array(std::size_t fixed) {
  stack_->back().form = shape::array;
  stack_->back().fixed = fixed;
}

void schema_archive::make_alternatives() { stack_->back().form = shape::alternatives; }

void schema_archive::last_is_optional() {
  if (!stack_->back().children.empty()) stack_->back().children.back().optional = true;
}

void schema_archive::leaf(leaf_kind kind) {
  static constexpr std::string_view schemas[] = {R"({"type":"boolean"})", R"({"type":"string"})",
                                                 R"({"type":"null"})", "{}"};
  add_leaf(std::string(schemas[static_cast<int>(kind)]));
}

void schema_archive::integer(bool is_signed, std::size_t bytes) {
  std::string schema;
  switch (bytes) {
    case 1: schema = is_signed ? integer_schema<std::int8_t>("int8") : integer_schema<std::uint8_t>("uint8"); break;
    case 2: schema = is_signed ? integer_schema<std::int16_t>("int16") : integer_schema<std::uint16_t>("uint16"); break;
    case 4: schema = is_signed ? integer_schema<std::int32_t>("int32") : integer_schema<std::uint32_t>("uint32"); break;
    default: schema = is_signed ? integer_schema<std::int64_t>("int64") : integer_schema<std::uint64_t>("uint64");
  }
  add_leaf(std::move(schema));
}

void schema_archive::number(std::size_t bytes) {
  std::string schema = bytes == sizeof(float)    ? R"({"type":"number","format":"float"})"
                       : bytes == sizeof(double) ? R"({"type":"number","format":"double"})"
                                                 : R"({"type":"number"})";
  add_leaf(std::move(schema));
}

bool schema_archive::enter(const std::type_info& t) {
  if (std::any_of(expanding_.begin(), expanding_.end(), [&](const std::type_info* e) { return *e == t; }))
    return false;
  expanding_.push_back(&t);
  return true;
}

void schema_archive::leave() { expanding_.pop_back(); }

namespace {

void write(writer& w, const schema_archive::node& n);

}  // namespace

std::string schema_archive::text() const {
  if (stack_->size() != 1 || stack_->front().children.empty()) return "{}";
  rapidjson::StringBuffer out;
  writer w(out);
  write(w, stack_->front().children.front());
  return out.GetString();
}

namespace {

// A record whose fields have no names is read by position: JSON's array (or an object
// in that order); with names, by name, unnamed ones called valueN as cereal calls them.
void write_record(writer& w, const schema_archive::node& n) {
  const bool named = std::any_of(n.children.begin(), n.children.end(), [](const auto& c) { return c.name; });
  w.StartObject();
  if (n.children.empty()) {
    key(w, "type");
    w.String("object");
  } else if (!named) {
    key(w, "type");
    w.String("array");
    key(w, "prefixItems");
    w.StartArray();
    for (const auto& c : n.children) write(w, c);
    w.EndArray();
    key(w, "minItems");
    w.Uint64(n.children.size());
  } else {
    std::vector<std::string> names;
    for (const auto& c : n.children)
      names.push_back(c.name ? std::string(c.name) : "value" + std::to_string(names.size()));
    key(w, "type");
    w.String("object");
    key(w, "properties");
    w.StartObject();
    for (std::size_t i = 0; i < n.children.size(); ++i) {
      key(w, names[i]);
      write(w, n.children[i]);
    }
    w.EndObject();
    key(w, "required");
    w.StartArray();
    for (std::size_t i = 0; i < n.children.size(); ++i)
      if (!n.children[i].optional) w.String(names[i].c_str(), static_cast<rapidjson::SizeType>(names[i].size()));
    w.EndArray();
  }
  w.EndObject();
}

void write(writer& w, const schema_archive::node& n) {
  if (!n.leaf.empty()) {
    w.RawValue(n.leaf.data(), n.leaf.size(), rapidjson::kObjectType);
    return;
  }
  switch (n.form) {
    case schema_archive::shape::record: write_record(w, n); return;
    case schema_archive::shape::array:
      w.StartObject();
      key(w, "type");
      w.String("array");
      if (!n.children.empty()) {
        key(w, "items");
        write(w, n.children.front());
      }
      if (n.fixed) {
        key(w, "minItems");
        w.Uint64(n.fixed);
        key(w, "maxItems");
        w.Uint64(n.fixed);
      }
      w.EndObject();
      return;
    case schema_archive::shape::alternatives:
      w.StartObject();
      key(w, "oneOf");
      w.StartArray();
      for (const auto& c : n.children) write(w, c);
      w.EndArray();
      w.EndObject();
      return;
  }
}

}  // namespace

}  // namespace parallelcode::detail
