// The durations and sizes the daemon's and the CLI's options take (supervisor/control/units),
// and the CLI's quick reading of the daemon's usual answer (supervisor/control/protocol).

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "protocol.hpp"
#include "units.hpp"

using parallelcode::control::parse_duration;
using parallelcode::control::parse_size;
using namespace std::chrono_literals;

TEST_CASE("a duration takes a unit, a fraction and compounds from larger units to smaller") {
  CHECK(parse_duration("0") == 0us);
  CHECK(parse_duration("500us") == 500us);
  CHECK(parse_duration("250ms") == 250ms);
  CHECK(parse_duration("2s") == 2s);
  CHECK(parse_duration("1.5s") == 1500ms);
  CHECK(parse_duration(".5s") == 500ms);
  CHECK(parse_duration("1m30s") == 90s);
  CHECK(parse_duration("1h30m") == 90min);
  CHECK(parse_duration("2h") == 2h);
  CHECK(parse_duration("1d") == 24h);
  CHECK(parse_duration("1m30s250ms") == 90250ms);
}

TEST_CASE("a duration without a unit, with an unknown unit, out of order or over a year is refused, saying what is taken") {
  for (const char* bad : {"5", "", "s", "5x", "1.2.3s", "30s1m", "1s1s", "1m-3s", "-1s", "400d", "1 s"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_duration(bad), std::invalid_argument);
  }
  try {
    parse_duration("5x");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("1m30s") != std::string::npos);
  }
}

TEST_CASE("a size is bytes, K M G T and KiB MiB GiB TiB in powers of 1024, kB MB GB TB in powers of 1000") {
  CHECK(parse_size("4096") == 4096);
  CHECK(parse_size("4096B") == 4096);
  CHECK(parse_size("64K") == 64 << 10);
  CHECK(parse_size("64k") == 64 << 10);
  CHECK(parse_size("16M") == 16 << 20);
  CHECK(parse_size("512MiB") == std::size_t{512} << 20);
  CHECK(parse_size("512MB") == 512'000'000);
  CHECK(parse_size("1G") == std::size_t{1} << 30);
  CHECK(parse_size("1GiB") == std::size_t{1} << 30);
  CHECK(parse_size("2GB") == 2'000'000'000);
  CHECK(parse_size("1.5G") == std::size_t{3} << 29);
  CHECK(parse_size("1kB") == 1000);
  CHECK(parse_size("1TiB") == std::size_t{1} << 40);
}

TEST_CASE("a size with an unknown unit, a fraction of a byte or past the address space is refused") {
  for (const char* bad : {"", "M", "12X", "1.5", "1mb", "1Mib", "99999999999999999T", "-1K"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_size(bad), std::invalid_argument);
  }
}

TEST_CASE("the usual answer is read without a document, its result exactly as the daemon wrote it") {
  using parallelcode::control::plain_result;
  const auto a = plain_result(R"({"id":42,"ok":true,"result":{"a":[1,2.50,"x\u00e9"]}})");
  REQUIRE(a);
  CHECK(a->id == 42);
  CHECK(a->result == R"({"a":[1,2.50,"x\u00e9"]})");
  CHECK(plain_result(R"({"id":0,"ok":true,"result":"Hello 1!"})")->result == R"("Hello 1!")");
  // The answer's object is a level of the 64 parse allows.
  CHECK(plain_result("{\"id\":1,\"ok\":true,\"result\":" + std::string(63, '[') + std::string(63, ']') + "}"));
  CHECK_FALSE(plain_result("{\"id\":1,\"ok\":true,\"result\":" + std::string(64, '[') + std::string(64, ']') + "}"));
  CHECK(plain_result(R"({"id":7,"ok":true,"result":123456789012345678901234567890})")->result ==
        "123456789012345678901234567890");
}

TEST_CASE("any other answer is left to the full parse: errors, more members, bad JSON, ids JSON does not write") {
  using parallelcode::control::plain_result;
  for (const char* other : {R"({"id":1,"ok":false,"error":{"type":"busy","message":"x"}})",
                            R"({"id":1,"ok":true,"worker_pid":5,"result":1})", R"({"id":1,"ok":true,"result":1,"x":2})",
                            R"({"id":1,"ok":true,"result":1 2})", R"({"id":1,"ok":true,"result":[1,})",
                            R"({"id":1,"ok":true,"result":NaN})", "{\"id\":1,\"ok\":true,\"result\":\"\xff\"}",
                            R"({"id":01,"ok":true,"result":1})", R"({"id":-1,"ok":true,"result":1})",
                            R"({"id":99999999999999999999,"ok":true,"result":1})", R"({"ok":true,"result":1})",
                            R"({"id":1,"ok":true,"result":})", R"({"id":1,"ok":true,"result":1)", ""}) {
    CAPTURE(other);
    CHECK_FALSE(plain_result(other));
  }
}

TEST_CASE("parse finds a member's text in its one pass exactly where member_text finds it") {
  using parallelcode::control::member_text;
  using parallelcode::control::parse;
  for (const char* body : {R"({"op":"submit","task":"t","args":{"a":[1,2.50,{"b":null}]},"id":3})",
                           R"({"args":  -1.5e+3  ,"x":1})", R"({"args":"a\"b}","op":"x"})", R"({"args":true})",
                           R"({"args":null})", R"({"args":[ ]})", R"({"args":{}})", R"({"args":123456789012345678901234})",
                           R"({"x":{"args":1},"args":2})", R"({"args":1,"args":2})", R"({"x":[{"args":1}]})",
                           R"({"op":"status"})", R"( { "args" : [ [ [ ] ] ] } )", R"({"a":0,"args":0})"}) {
    CAPTURE(body);
    rapidjson::Document doc;
    std::optional<std::string_view> member;
    REQUIRE_FALSE(parse(body, doc, "args", member));
    CHECK(member == member_text(body, "args"));
  }
  rapidjson::Document doc;
  std::optional<std::string_view> member;
  CHECK(parse(R"({"args":[1,}")", doc, "args", member));  // not JSON: an error, whatever was found
}

TEST_CASE("is_json takes exactly what parse takes") {
  using parallelcode::control::is_json;
  using parallelcode::control::parse;
  std::string deep(64, '['), deeper(65, '[');
  deep += std::string(64, ']');
  deeper += std::string(65, ']');
  for (const std::string text :
       {std::string("{}"), std::string("[1,-0,0.5e-3,1E+2,123456789012345678901234567890,1e400,-1e-400]"),
        std::string(" \"a\\u00e9\\n\" "), std::string("true"), std::string("null"), std::string("{\"a\":{\"b\":[]}}"), deep, deeper,
        std::string("01"), std::string("-"), std::string("1."), std::string(".5"), std::string("+1"), std::string("1e"),
        std::string("NaN"), std::string("Infinity"), std::string("[1,]"), std::string("{\"a\"}"), std::string("1 2"),
        std::string("\"\xff\""), std::string("\"\xed\xa0\x80\""), std::string(""), std::string("   "), std::string("nul"),
        std::string("[\"\\ud800\"]"), std::string("{\"a\":1,}"), std::string("\"a\tb\""), std::string("[1]x")}) {
    CAPTURE(text);
    rapidjson::Document doc;
    CHECK(is_json(text) == !parse(text, doc));
  }
}
