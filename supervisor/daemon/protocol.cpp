#include "protocol.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace parallelcode::control {

namespace {

// Counts nesting while RapidJSON's iterative reader walks the text.
struct depth_check : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, depth_check> {
  unsigned depth = 0;
  bool too_deep = false;
  bool Default() { return true; }
  bool StartObject() { return enter(); }
  bool EndObject(rapidjson::SizeType) { return leave(); }
  bool StartArray() { return enter(); }
  bool EndArray(rapidjson::SizeType) { return leave(); }
  bool enter() {
    too_deep = ++depth > max_json_depth;
    return !too_deep;
  }
  bool leave() {
    --depth;
    return true;
  }
};

constexpr unsigned parse_flags =
    rapidjson::kParseIterativeFlag | rapidjson::kParseStopWhenDoneFlag | rapidjson::kParseValidateEncodingFlag;

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

std::optional<std::string> parse(std::string_view text, rapidjson::Document& doc) {
  try {
    depth_check check;
    rapidjson::Reader reader;
    rapidjson::MemoryStream in(text.data(), text.size());
    const rapidjson::ParseResult walked = reader.Parse<parse_flags>(in, check);
    if (check.too_deep) return "JSON nested more than " + std::to_string(max_json_depth) + " levels deep";
    if (!walked)
      return std::string("not JSON: ") + rapidjson::GetParseError_En(walked.Code()) + " at byte " +
             std::to_string(walked.Offset());
    rapidjson::MemoryStream again(text.data(), text.size());
    doc.ParseStream<parse_flags>(again);
    if (doc.HasParseError()) return std::string("not JSON: ") + rapidjson::GetParseError_En(doc.GetParseError());
    // Nothing but blanks may follow the value.
    for (std::size_t i = again.Tell(); i < text.size(); ++i)
      if (!std::strchr(" \t\r\n", text[i])) return std::string("not JSON: text after the value");
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string("not JSON: ") + e.what();
  }
}

std::string to_text(const rapidjson::Value& v) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> writer(out);
  v.Accept(writer);
  return std::string(out.GetString(), out.GetSize());
}

namespace {

// s with every byte that does not start a valid UTF-8 sequence replaced by U+FFFD:
// a client's text echoed back (a lone surrogate \ude2e decodes to such bytes) must
// not make the answer JSON the client cannot parse.
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

}  // namespace

std::string quote(std::string_view s) {
  const std::string text = valid_utf8(s);
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> writer(out);
  writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  return std::string(out.GetString(), out.GetSize());
}

std::string error_response(std::optional<std::int64_t> id, std::string_view type, std::string_view message,
                           std::string_view extra) {
  std::string out = "{";
  if (id) out += "\"id\":" + std::to_string(*id) + ",";
  out += "\"ok\":false,\"error\":{\"type\":" + quote(type) + ",\"message\":" + quote(message);
  out += extra;
  out += "}}";
  return out;
}

std::string string_member(const rapidjson::Value& v, const char* key) {
  return std::string(v[key].GetString(), v[key].GetStringLength());
}

std::optional<std::int64_t> request_id(const rapidjson::Value& request) {
  if (request.HasMember("id") && request["id"].IsInt64()) return request["id"].GetInt64();
  return std::nullopt;
}

std::string id_field(std::optional<std::int64_t> rid) { return rid ? "\"id\":" + std::to_string(*rid) + "," : ""; }

}  // namespace parallelcode::control
