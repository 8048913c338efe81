#pragma once

// The control layer: the control socket's protocol, shared by the daemon, the CLI and
// the fuzzer. Frames and JSON text here; typed requests in requests.hpp; the daemon's
// answers in answers.hpp; the fds and sockets both ends own in socket.hpp.
//
// A frame is a 4-byte little-endian length n (1 <= n <= the receiver's limit),
// then n bytes of one JSON object. Requests carry "op" and an optional integer
// "id" that the response repeats; responses carry "ok" and either the answer or
// "error": {"type": ..., "message": ..., ...}. Submissions may be pipelined and
// answered out of order.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <cereal/archives/json.hpp>  // first: it makes RapidJSON's assertions throw
#include <rapidjson/document.h>

namespace parallelcode::control {

inline constexpr std::size_t default_max_frame = std::size_t{16} << 20;
inline constexpr unsigned max_json_depth = 64;
inline constexpr std::int64_t longest_timeout_ms = 365LL * 24 * 3600 * 1000;  // a year: as good as none

// $XDG_RUNTIME_DIR/parallelcode.sock, else /tmp/parallelcode-$UID.sock. In /tmp another
// user may squat the name: the daemon refuses a path it does not own, the CLI a foreign daemon.
std::string default_socket_path();

// Appends one frame holding body.
void append_frame(std::string& out, std::string_view body);

// A frame's length from its first 4 bytes.
std::uint32_t frame_length(const char* header) noexcept;

// What the front of a receive buffer holds: a whole frame of `length` body bytes, the
// start of one, or a length outside 1..max_frame (the connection can only end).
struct frame_cut {
  enum kind_t { partial, whole, bad_length } kind;
  std::uint32_t length;  // of the body, once the header came
};
frame_cut cut_frame(std::string_view in, std::size_t max_frame) noexcept;

// Parses one JSON text of at most max_json_depth levels of nesting, without
// recursion (RapidJSON's recursive parser, writer and destructor would overflow
// the stack on a hostile [[[[...). Numbers are exact: integers within int64 or
// uint64 as such, others as the nearest double, and one past a double's range
// (1e400, valid JSON) as +-infinity. Returns the error, or nothing.
std::optional<std::string> parse(std::string_view text, rapidjson::Document& doc);
// Whether parse() would take text, found without building a document (for the error, parse).
bool is_json(std::string_view text);
// The same, and in the same pass what member_text(text, key) gives, into `member`.
std::optional<std::string> parse(std::string_view text, rapidjson::Document& doc, std::string_view key,
                                 std::optional<std::string_view>& member);

// The text of member `key` of the object `text` (which parse() took) as it was
// written, blanks, escapes and digits and all; nothing if it has none.
std::optional<std::string_view> member_text(std::string_view text, std::string_view key);

// The daemon's usual answer to a submit, {"id":N,"ok":true,"result":R} byte for byte
// as it writes one, read without building a document: N, and R's text, checked to be
// one JSON value. Nothing for any other answer: the caller parses that one whole.
struct plain_answer {
  std::uint64_t id;
  std::string_view result;
};
std::optional<plain_answer> plain_result(std::string_view body);

// A string member, NULs and all (GetString alone would stop at the first NUL).
std::string string_member(const rapidjson::Value& v, const char* key);

// Compact JSON text of a value, each double in its shortest exact form; throws
// std::invalid_argument for what JSON cannot hold (an infinite number, a string
// that is not UTF-8).
std::string to_text(const rapidjson::Value& v);
// A JSON string literal for s; bytes that are not UTF-8 become U+FFFD.
std::string quote(std::string_view s);

// {"id":id,"ok":false,"error":{"type":type,"message":message}}, without "id" if none.
std::string error_answer(std::optional<std::int64_t> id, std::string_view type, std::string_view message);

}  // namespace parallelcode::control
