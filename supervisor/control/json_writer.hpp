#pragma once

// Internal to the control layer's .cpp files: one JSON text written with
// rapidjson::Writer, every string made valid UTF-8 first (a client's text echoed
// back, say a lone surrogate \ude2e, must not make an answer it cannot parse).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <cereal/archives/json.hpp>  // first: it makes RapidJSON's assertions throw
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace parallelcode::control {

// s with every byte that does not start a valid UTF-8 sequence replaced by U+FFFD.
std::string valid_utf8(std::string_view s);

class json_writer {
 public:
  json_writer() : writer_(buffer_) {}
  json_writer(const json_writer&) = delete;
  json_writer& operator=(const json_writer&) = delete;

  json_writer& open() { writer_.StartObject(); return *this; }
  json_writer& close() { writer_.EndObject(); return *this; }
  json_writer& open_array() { writer_.StartArray(); return *this; }
  json_writer& close_array() { writer_.EndArray(); return *this; }
  json_writer& key(std::string_view k) { writer_.Key(k.data(), static_cast<rapidjson::SizeType>(k.size())); return *this; }
  json_writer& string(std::string_view s) {
    const std::string text = valid_utf8(s);
    writer_.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
    return *this;
  }
  json_writer& number(std::int64_t n) { writer_.Int64(n); return *this; }
  json_writer& number(std::uint64_t n) { writer_.Uint64(n); return *this; }
  json_writer& number(int n) { writer_.Int(n); return *this; }
  json_writer& number(unsigned n) { writer_.Uint(n); return *this; }
  json_writer& boolean(bool b) { writer_.Bool(b); return *this; }
  // JSON text written as it is: a task's result, a client's arguments.
  json_writer& raw(std::string_view json) { writer_.RawValue(json.data(), json.size(), rapidjson::kObjectType); return *this; }

  // The "id" member an answer opens with, if the request had one.
  json_writer& id(std::optional<std::int64_t> id) {
    if (id) key("id").number(*id);
    return *this;
  }
  // "ok":false,"error":{"type":type,"message":message, and the caller adds the rest and closes.
  json_writer& open_error(std::optional<std::int64_t> rid, std::string_view type, std::string_view message) {
    return open().id(rid).key("ok").boolean(false).key("error").open().key("type").string(type).key("message").string(message);
  }

  std::string text() const { return std::string(buffer_.GetString(), buffer_.GetSize()); }

 private:
  rapidjson::StringBuffer buffer_;
  rapidjson::Writer<rapidjson::StringBuffer> writer_;
};

}  // namespace parallelcode::control
