#include "protocol.hpp"

#include <unistd.h>

#include <charconv>

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include "json_text.hpp"
#include "json_writer.hpp"

namespace parallelcode::control {

namespace {

namespace json_text = parallelcode::detail::json_text;

// Walks the text only to find where member `key` of the top-level object is written
// (json_text::member_span), and stops there.
struct member_finder {
  std::string_view text;
  json_text::member_span span;
  const rapidjson::MemoryStream* in;
  unsigned depth = 0;

  bool Key(const char* s, rapidjson::SizeType n, bool) {
    span.key(depth, std::string_view(s, n), in->Tell());
    return true;
  }
  bool value() { return !span.ended(depth, in->Tell()); }
  bool Null() { return value(); }
  bool Bool(bool) { return value(); }
  bool Int(int) { return value(); }
  bool Uint(unsigned) { return value(); }
  bool Int64(std::int64_t) { return value(); }
  bool Uint64(std::uint64_t) { return value(); }
  bool Double(double) { return value(); }
  bool RawNumber(const char*, rapidjson::SizeType, bool) {
    // Numbers are read as 0s padded with blanks (json_text.hpp): the number's own text ends later.
    return !span.ended(depth, json_text::number_end(text, in->Tell() - 1));
  }
  bool String(const char*, rapidjson::SizeType, bool) { return value(); }
  bool StartObject() { return ++depth, true; }
  bool EndObject(rapidjson::SizeType) { return close(); }
  bool StartArray() { return ++depth, true; }
  bool EndArray(rapidjson::SizeType) { return close(); }
  bool close() {
    --depth;
    return !span.ended(depth, in->Tell() + 1);
  }
};

}  // namespace

std::string default_socket_path() {
  if (const char* dir = std::getenv("XDG_RUNTIME_DIR"); dir && *dir) return std::string(dir) + "/parallelcode.sock";
  return "/tmp/parallelcode-" + std::to_string(::getuid()) + ".sock";
}

void append_frame(std::string& out, std::string_view body) {
  const auto n = static_cast<std::uint32_t>(body.size());
  const char header[4] = {static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
                          static_cast<char>((n >> 16) & 0xff), static_cast<char>((n >> 24) & 0xff)};
  out.append(header, 4);
  out.append(body);
}

std::uint32_t frame_length(const char* header) noexcept {
  const auto* b = reinterpret_cast<const unsigned char*>(header);
  return std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 | std::uint32_t{b[3]} << 24;
}

frame_cut cut_frame(std::string_view in, std::size_t max_frame) noexcept {
  if (in.size() < 4) return {frame_cut::partial, 0};
  const std::uint32_t n = frame_length(in.data());
  if (n == 0 || n > max_frame) return {frame_cut::bad_length, n};
  return {in.size() < 4 + std::size_t{n} ? frame_cut::partial : frame_cut::whole, n};
}

std::optional<std::string> parse(std::string_view text, rapidjson::Document& doc) {
  return json_text::read(text, doc, {.max_depth = max_json_depth});
}

bool is_json(std::string_view text) { return json_text::acceptable(text, {.max_depth = max_json_depth}); }

std::optional<std::string> parse(std::string_view text, rapidjson::Document& doc, std::string_view key,
                                 std::optional<std::string_view>& member) {
  return json_text::read(text, doc, {.max_depth = max_json_depth}, key, &member);
}

std::optional<std::string_view> member_text(std::string_view text, std::string_view key) {
  const std::string zeros = json_text::numbers_as_zeros(text);
  rapidjson::MemoryStream in(zeros.data(), zeros.size());
  member_finder finder{text, {text, key}, &in};
  json_text::walk<0>(in, finder);
  return finder.span.text();
}

std::optional<plain_answer> plain_result(std::string_view body) {
  constexpr std::string_view head = "{\"id\":", middle = ",\"ok\":true,\"result\":";
  if (!body.starts_with(head) || !body.ends_with('}')) return std::nullopt;
  const char* digits = body.data() + head.size();
  std::uint64_t id = 0;
  const auto [after, error] = std::from_chars(digits, body.data() + body.size(), id);
  if (error != std::errc{} || (*digits == '0' && after - digits > 1)) return std::nullopt;  // JSON has no 007
  std::string_view rest(after, static_cast<std::size_t>(body.data() + body.size() - after));
  if (!rest.starts_with(middle)) return std::nullopt;
  const std::string_view result = rest.substr(middle.size(), rest.size() - middle.size() - 1);
  // One value, as parse() takes it inside the answer's object (one level of it).
  if (!json_text::acceptable(result, {.max_depth = max_json_depth - 1})) return std::nullopt;
  return plain_answer{id, result};
}

std::string to_text(const rapidjson::Value& v) { return json_text::write(v); }

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    std::uint32_t code = n == 1 ? c : n == 2 ? c & 0x1fu : n == 3 ? c & 0x0fu : c & 0x07u;
    for (std::size_t k = 1; ok && k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      ok = (d >> 6) == 2;
      code = (code << 6) | (d & 0x3fu);
    }
    ok = ok && !(n == 2 && code < 0x80) && !(n == 3 && code < 0x800) && !(n == 4 && (code < 0x10000 || code > 0x10ffff)) &&
         !(code >= 0xd800 && code <= 0xdfff);
    if (ok) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

std::string quote(std::string_view s) { return json_writer().string(s).text(); }

std::string error_answer(std::optional<std::int64_t> id, std::string_view type, std::string_view message) {
  json_writer out;
  out.open_error(id, type, message).close().close();
  return out.text();
}

std::string string_member(const rapidjson::Value& v, const char* key) {
  return std::string(v[key].GetString(), v[key].GetStringLength());
}

}  // namespace parallelcode::control
