#pragma once

// JSON text read and written exactly, for the library's JSON codec and the daemon's
// protocol alike (header-only: the CLI links the protocol, not the library).
//
// RapidJSON alone loses numbers: its default parse rounds some doubles wrong, its
// Grisu2 writer is not always shortest, and it refuses a number past a double's
// range (1e400) as "too big", even with kParseNumbersAsStringsFlag. So it reads a
// copy of the text in which each number is a 0 padded with blanks to its length,
// and each number is converted from the original text with std::from_chars
// (correctly rounded) and written with std::to_chars (shortest round trip).

#include <cereal/archives/json.hpp>  // first: it makes RapidJSON's assertions throw

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace parallelcode::detail::json_text {

struct read_options {
  unsigned max_depth = 0;     // of nested arrays and objects; 0: no limit
  bool nan_and_inf = false;   // NaN, Infinity, -Infinity: cereal's words for what JSON has no number for
  bool validate_utf8 = true;  // else a string's bytes are taken as they are
};

// The end of the number that starts at t[i] by JSON's grammar, or i if none does.
inline std::size_t number_end(std::string_view t, std::size_t i) {
  auto digit = [&](std::size_t k) { return k < t.size() && t[k] >= '0' && t[k] <= '9'; };
  std::size_t j = i;
  if (j < t.size() && t[j] == '-') ++j;
  if (!digit(j)) return i;
  if (t[j] == '0') {
    ++j;
  } else {
    while (digit(j)) ++j;
  }
  if (j < t.size() && t[j] == '.') {
    if (!digit(j + 1)) return i;
    for (++j; digit(j);) ++j;
  }
  if (j < t.size() && (t[j] == 'e' || t[j] == 'E')) {
    std::size_t k = j + 1;
    if (k < t.size() && (t[k] == '+' || t[k] == '-')) ++k;
    if (!digit(k)) return i;
    for (j = k; digit(j);) ++j;
  }
  return j;
}

// t with every number outside strings made a 0 and blanks of the same length: offsets
// stay those of t. What is not a number by the grammar is left for RapidJSON to refuse.
inline std::string numbers_as_zeros(std::string_view t) {
  std::string out(t);
  bool in_string = false;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      const std::size_t end = number_end(t, i);
      if (end == i) continue;
      out[i] = '0';
      std::fill(out.begin() + static_cast<std::ptrdiff_t>(i) + 1, out.begin() + static_cast<std::ptrdiff_t>(end), ' ');
      i = end - 1;
    }
  }
  return out;
}

// Whether a number that std::from_chars finds out of a double's range is too large
// (else too small): it reports both alike. The place of its leading digit, with its
// exponent, says which; near the limits, where this is asked, never wrongly.
inline bool too_large(std::string_view s) {
  auto digit = [&](std::size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  std::size_t i = s[0] == '-';
  const std::size_t integer = i;
  while (digit(i)) ++i;
  const std::size_t lead = s.find_first_not_of('0', integer);
  long long place = lead < i ? static_cast<long long>(i - lead) : 0;  // digits from the leading one
  if (i < s.size() && s[i] == '.') {
    const std::size_t fraction = ++i;
    while (digit(i)) ++i;
    if (place == 0) place = -static_cast<long long>(std::min(s.find_first_not_of('0', fraction), i) - fraction);
  }
  long long exponent = 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    const bool negative = ++i < s.size() && s[i] == '-';
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    for (; digit(i); ++i) exponent = std::min(exponent * 10 + (s[i] - '0'), 1LL << 40);
    if (negative) exponent = -exponent;
  }
  return exponent + place > 0;
}

// A number as doc keeps it: an integer that fits int64 or uint64 as one, any other
// as the nearest double; past a double's range, +-infinity, which no JSON number
// means otherwise; below it, a zero of its sign.
inline bool put_number(rapidjson::Document& doc, std::string_view s) {
  const char* const begin = s.data();
  const char* const end = begin + s.size();
  if (s.find_first_of(".eE") == std::string_view::npos) {
    std::int64_t i = 0;
    if (const auto r = std::from_chars(begin, end, i); r.ec == std::errc() && r.ptr == end) return doc.Int64(i);
    std::uint64_t u = 0;
    if (const auto r = std::from_chars(begin, end, u); r.ec == std::errc() && r.ptr == end) return doc.Uint64(u);
  }
  double d = 0;
  const auto r = std::from_chars(begin, end, d);
  if (r.ec == std::errc::result_out_of_range)
    d = std::copysign(too_large(s) ? std::numeric_limits<double>::infinity() : 0.0, s[0] == '-' ? -1.0 : 1.0);
  else if (r.ec != std::errc() || r.ptr != end)
    return false;
  return doc.Double(d);
}

// Where the value of the top-level object's first member named `key` is written, noted
// from a walk's events: its key at depth 1, then the first value to end back there. A
// scalar ends where the stream is after its event, an array or object one past the
// stream at its end event (the iterative reader takes the bracket after).
class member_span {
 public:
  member_span(std::string_view text, std::string_view key) : text_(text), key_(key) {}
  // A key at `depth`, the stream just past it.
  void key(unsigned depth, std::string_view k, std::size_t after) {
    if (depth != 1 || begin_ != std::string_view::npos || k != key_) return;
    begin_ = text_.find_first_not_of(" \t\r\n", after);  // the ':'
    begin_ = text_.find_first_not_of(" \t\r\n", begin_ + 1);
  }
  // A value ended just before `after`, the walk at `depth` again; true if it was the member's.
  bool ended(unsigned depth, std::size_t after) {
    if (begin_ == std::string_view::npos || end_ != std::string_view::npos || depth != 1) return false;
    end_ = after;
    return true;
  }
  std::optional<std::string_view> text() const {
    if (end_ == std::string_view::npos) return std::nullopt;
    return text_.substr(begin_, end_ - begin_);
  }

 private:
  std::string_view text_, key_;
  std::size_t begin_ = std::string_view::npos;
  std::size_t end_ = std::string_view::npos;
};

// RapidJSON's events into doc: numbers from the original text, nesting counted.
class document_builder {
 public:
  document_builder(rapidjson::Document& doc, std::string_view text, const rapidjson::MemoryStream& in, unsigned max_depth)
      : doc_(doc), text_(text), in_(in), max_depth_(max_depth) {}

  bool too_deep() const noexcept { return too_deep_; }

  // Also finds where the value of the top-level object's first member named `key`
  // is written (member_text's walk, in the same pass).
  void find_member(std::string_view key) { member_.emplace(text_, key); }
  std::optional<std::string_view> member() const { return member_ ? member_->text() : std::nullopt; }

  bool Null() { return ended_at(in_.Tell()) && doc_.Null(); }
  bool Bool(bool b) { return ended_at(in_.Tell()) && doc_.Bool(b); }
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned u) { return doc_.Uint(u); }
  bool Int64(std::int64_t i) { return doc_.Int64(i); }
  bool Uint64(std::uint64_t u) { return doc_.Uint64(u); }
  bool Double(double d) { return doc_.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    const std::string_view raw(s, n);
    if (raw == "0") {  // one of ours: its text ends where the blanks after it do
      const std::size_t at = in_.Tell() - 1;
      const std::size_t end = number_end(text_, at);
      return ended_at(end) && put_number(doc_, text_.substr(at, end - at));
    }
    if (raw == "NaN") return ended_at(in_.Tell()) && doc_.Double(std::numeric_limits<double>::quiet_NaN());
    if (raw == "Infinity" || raw == "-Infinity")
      return ended_at(in_.Tell()) && doc_.Double(raw[0] == '-' ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity());
    return false;
  }
  bool String(const char* s, rapidjson::SizeType n, bool) { return ended_at(in_.Tell()) && doc_.String(s, n, true); }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (member_) member_->key(depth_, std::string_view(s, n), in_.Tell());
    return doc_.Key(s, n, true);
  }
  bool StartObject() { return enter() && doc_.StartObject(); }
  bool EndObject(rapidjson::SizeType n) {
    --depth_;
    return ended_at(in_.Tell() + 1) && doc_.EndObject(n);
  }
  bool StartArray() { return enter() && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType n) {
    --depth_;
    return ended_at(in_.Tell() + 1) && doc_.EndArray(n);
  }

 private:
  bool enter() {
    ++depth_;
    too_deep_ = max_depth_ && depth_ > max_depth_;
    return !too_deep_;
  }
  // A value ended just before `after`. Always true: it only takes note, for member().
  bool ended_at(std::size_t after) {
    if (member_) member_->ended(depth_, after);
    return true;
  }

  rapidjson::Document& doc_;
  std::string_view text_;
  const rapidjson::MemoryStream& in_;
  unsigned max_depth_;
  unsigned depth_ = 0;
  bool too_deep_ = false;
  std::optional<member_span> member_;
};

template <unsigned flags, class Handler>
rapidjson::ParseResult walk(rapidjson::MemoryStream& in, Handler& handler) {
  rapidjson::Reader reader;
  return reader.Parse<flags | rapidjson::kParseIterativeFlag | rapidjson::kParseStopWhenDoneFlag |
                      rapidjson::kParseNumbersAsStringsFlag>(in, handler);
}

// The walk the options ask for: UTF-8 checked or not, cereal's words for NaN and infinity or not.
template <class Handler>
rapidjson::ParseResult walk(rapidjson::MemoryStream& in, Handler& handler, const read_options& options) {
  constexpr unsigned utf8 = rapidjson::kParseValidateEncodingFlag;
  constexpr unsigned words = rapidjson::kParseNanAndInfFlag;
  if (options.validate_utf8) return options.nan_and_inf ? walk<utf8 | words>(in, handler) : walk<utf8>(in, handler);
  return options.nan_and_inf ? walk<words>(in, handler) : walk<0>(in, handler);
}

// Parses one JSON text into doc, without recursion (RapidJSON's recursive parser would
// overflow the stack on a hostile [[[[...). Returns the error, or nothing. With `member`,
// also the text of the top-level object's member `key` as it was written, or nothing.
inline std::optional<std::string> read(std::string_view text, rapidjson::Document& doc, const read_options& options,
                                       std::string_view key = {}, std::optional<std::string_view>* member = nullptr) {
  try {
    const std::string zeros = numbers_as_zeros(text);
    rapidjson::MemoryStream in(zeros.data(), zeros.size());
    document_builder builder(doc, text, in, options.max_depth);
    if (member) builder.find_member(key);
    rapidjson::ParseResult result;
    auto generate = [&](rapidjson::Document&) {
      result = walk(in, builder, options);
      return !result.IsError();
    };
    doc.Populate(generate);
    if (builder.too_deep()) return "JSON nested more than " + std::to_string(options.max_depth) + " levels deep";
    if (result.IsError())
      return std::string("not JSON: ") + rapidjson::GetParseError_En(result.Code()) + " at byte " +
             std::to_string(result.Offset());
    // Nothing but blanks may follow the value.
    if (zeros.find_first_not_of(" \t\r\n", in.Tell()) != std::string::npos) return "not JSON: text after the value";
    if (member) *member = builder.member();
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string("not JSON: ") + e.what();
  }
}

// What read() takes, checked without a document: nesting counted, numbers and words
// as read() takes them (every number the grammar allows is one it keeps).
class checker {
 public:
  checker(unsigned max_depth, bool nan_and_inf) : max_depth_(max_depth), nan_and_inf_(nan_and_inf) {}
  bool too_deep() const noexcept { return too_deep_; }
  bool Null() { return true; }
  bool Bool(bool) { return true; }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    const std::string_view raw(s, n);
    return raw == "0" || (nan_and_inf_ && (raw == "NaN" || raw == "Infinity" || raw == "-Infinity"));
  }
  bool String(const char*, rapidjson::SizeType, bool) { return true; }
  bool Key(const char*, rapidjson::SizeType, bool) { return true; }
  bool StartObject() { return enter(); }
  bool EndObject(rapidjson::SizeType) { return --depth_, true; }
  bool StartArray() { return enter(); }
  bool EndArray(rapidjson::SizeType) { return --depth_, true; }
  // Never called with kParseNumbersAsStringsFlag; there for the handler concept.
  bool Int(int) { return true; }
  bool Uint(unsigned) { return true; }
  bool Int64(std::int64_t) { return true; }
  bool Uint64(std::uint64_t) { return true; }
  bool Double(double) { return true; }

 private:
  bool enter() {
    ++depth_;
    too_deep_ = max_depth_ && depth_ > max_depth_;
    return !too_deep_;
  }
  unsigned max_depth_;
  bool nan_and_inf_;
  unsigned depth_ = 0;
  bool too_deep_ = false;
};

// Whether read() would take text: true, or false where it would give an error.
inline bool acceptable(std::string_view text, const read_options& options) {
  try {
    const std::string zeros = numbers_as_zeros(text);
    rapidjson::MemoryStream in(zeros.data(), zeros.size());
    checker check(options.max_depth, options.nan_and_inf);
    const rapidjson::ParseResult result = walk(in, check, options);
    return !result.IsError() && !check.too_deep() && zeros.find_first_not_of(" \t\r\n", in.Tell()) == std::string::npos;
  } catch (const std::exception&) {
    return false;
  }
}

// Compact JSON, each double in the fewest digits that read back as it; what JSON
// cannot hold (NaN, +-infinity, a string that is not UTF-8) stops it, saying why.
class exact_writer : public rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                                              rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag> {
  using base = rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>, rapidjson::CrtAllocator,
                                 rapidjson::kWriteValidateEncodingFlag>;

 public:
  explicit exact_writer(rapidjson::StringBuffer& out) : base(out) {}

  const std::string& refusal() const noexcept { return refusal_; }

  bool Double(double d) {
    if (std::isnan(d)) return refuse("NaN is not a JSON number");
    if (std::isinf(d)) return refuse(d > 0 ? "inf is not a JSON number" : "-inf is not a JSON number");
    char text[32];
    char* end = std::to_chars(text, text + sizeof text - 2, d).ptr;
    // A double stays one to its reader: 6.0, not 6.
    if (std::string_view(text, static_cast<std::size_t>(end - text)).find_first_of(".e") == std::string_view::npos) {
      *end++ = '.';
      *end++ = '0';
    }
    return RawValue(text, static_cast<std::size_t>(end - text), rapidjson::kNumberType);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy = false) {
    return base::String(s, n, copy) || refuse("a string is not UTF-8 (a lone surrogate, or a stray byte)");
  }
  bool Key(const char* s, rapidjson::SizeType n, bool copy = false) {
    return base::Key(s, n, copy) || refuse("a field name is not UTF-8 (a lone surrogate, or a stray byte)");
  }

 private:
  bool refuse(const char* why) {
    if (refusal_.empty()) refusal_ = why;
    return false;
  }

  std::string refusal_;
};

// v as compact JSON; throws std::invalid_argument saying what JSON cannot hold.
inline std::string write(const rapidjson::Value& v) {
  rapidjson::StringBuffer out;
  exact_writer writer(out);
  if (!v.Accept(writer))
    throw std::invalid_argument(writer.refusal().empty() ? "the JSON writer stopped" : writer.refusal());
  return std::string(out.GetString(), out.GetSize());
}

}  // namespace parallelcode::detail::json_text
