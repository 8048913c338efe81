// The cereal archives: values round-trip, and corrupt bytes are refused before
// they can make a large allocation. The JSON codec keeps strings whole and
// doubles exact, and says what it cannot write.

#include <doctest/doctest.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <array>
#include <cstring>
#include <limits>
#include <random>
#include <deque>
#include <forward_list>
#include <list>
#include <tuple>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <parallelcode/detail/codec.hpp>
#include <parallelcode/detail/json.hpp>

namespace pd = parallelcode::detail;

namespace {

struct record {
  std::string name;
  std::vector<double> values;
  std::map<std::string, int> tags;
  std::optional<int> maybe;
  template <class A>
  void serialize(A& a) {
    a(name, values, tags, maybe);
  }
  bool operator==(const record&) const = default;
};

struct labels {
  std::string text;
  std::vector<std::string> list;
  std::map<std::string, std::string> by_name;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(text), CEREAL_NVP(list), CEREAL_NVP(by_name));
  }
  bool operator==(const labels&) const = default;
};

struct order {
  std::string customer;
  std::vector<record> lines;
  std::optional<std::string> note;
  std::variant<std::int64_t, std::string> ref;
  std::uint32_t priority = 0;
  bool urgent = false;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(customer), CEREAL_NVP(lines), CEREAL_NVP(note), CEREAL_NVP(ref), CEREAL_NVP(priority),
      CEREAL_NVP(urgent));
  }
  bool operator==(const order&) const = default;
};

// The same double, -0.0 apart from 0.0.
bool same_double(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("a struct of strings, vectors, maps and optionals round-trips") {
  const record r{"x", {1.5, 2.5}, {{"a", 1}}, 7};
  pd::byte_buffer b;
  pd::encode(b, r);
  CHECK(pd::decode<record>(b.data(), b.size()) == r);
}

TEST_CASE("a size prefix larger than the bytes left is refused before any allocation") {
  pd::byte_buffer b;
  pd::encode(b, std::string("hello"));
  const std::uint64_t huge = std::uint64_t{1} << 60;
  std::memcpy(b.data(), &huge, sizeof huge);
  CHECK_THROWS_AS(pd::decode<std::string>(b.data(), b.size()), pd::codec_error);

  pd::byte_buffer v;
  pd::encode(v, std::vector<std::uint64_t>{1, 2, 3});
  const std::uint64_t lie = 1'000'000'000;
  std::memcpy(v.data(), &lie, sizeof lie);
  CHECK_THROWS_AS(pd::decode<std::vector<std::uint64_t>>(v.data(), v.size()), pd::codec_error);
}

TEST_CASE("truncated data and data with bytes left over are refused") {
  pd::byte_buffer b;
  pd::encode(b, record{"name", {1, 2, 3}, {}, {}});
  for (std::size_t n = 0; n < b.size(); ++n)
    CHECK_THROWS_AS(pd::decode<record>(b.data(), n), pd::codec_error);
  pd::byte_buffer longer;
  pd::encode(longer, 5);
  longer.append("x", 1);
  CHECK_THROWS_AS(pd::decode<int>(longer.data(), longer.size()), pd::codec_error);
}

namespace {
struct throws_on_save {
  template <class A>
  void save(A&) const {
    throw std::runtime_error("no");
  }
  template <class A>
  void load(A&) {}
};
}  // namespace

TEST_CASE("an encode failure is a codec_error") {
  pd::byte_buffer b;
  CHECK_THROWS_AS(pd::encode(b, throws_on_save{}), pd::codec_error);
}

TEST_CASE("a size prefix cannot make a container of large elements allocate more than the bytes present") {
  // 1 MiB elements: a prefix of 300 with 300 bytes behind it must not become 300 MiB.
  using big = std::array<char, 1 << 20>;
  pd::byte_buffer b;
  pd::encode(b, std::vector<std::uint8_t>(300, 1));
  CHECK_THROWS_AS(pd::decode<std::vector<big>>(b.data(), b.size()), pd::codec_error);
  CHECK_THROWS_AS(pd::decode<std::deque<big>>(b.data(), b.size()), pd::codec_error);
  CHECK_THROWS_AS(pd::decode<std::list<big>>(b.data(), b.size()), pd::codec_error);
  // Arithmetic elements are checked exactly: 3 bytes cannot hold a uint64.
  pd::byte_buffer c;
  pd::encode(c, std::vector<std::uint8_t>{1, 2, 3});
  CHECK_THROWS_AS(pd::decode<std::vector<std::uint64_t>>(c.data(), c.size()), pd::codec_error);
}

namespace {
struct tag {
  template <class A>
  void serialize(A&) {}
};
}  // namespace

TEST_CASE("containers of empty elements, which take no bytes, still decode") {
  pd::byte_buffer b;
  pd::encode(b, std::vector<tag>(100));
  CHECK(pd::decode<std::vector<tag>>(b.data(), b.size()).size() == 100);
}

TEST_CASE("sequences of every kind round-trip through the growing loaders") {
  const std::vector<std::string> v{"a", "bb", ""};
  const std::deque<int> d{1, 2, 3};
  const std::list<std::vector<int>> l{{1}, {}, {2, 3}};
  const std::forward_list<std::string> f{"x", "y"};
  const std::vector<bool> bits{true, false, true};
  pd::byte_buffer b;
  pd::encode(b, std::make_tuple(v, d, l, f, bits));
  const auto back =
      pd::decode<std::tuple<std::vector<std::string>, std::deque<int>, std::list<std::vector<int>>,
                            std::forward_list<std::string>, std::vector<bool>>>(b.data(), b.size());
  CHECK(std::get<0>(back) == v);
  CHECK(std::get<1>(back) == d);
  CHECK(std::get<2>(back) == l);
  CHECK(std::get<3>(back) == f);
  CHECK(std::get<4>(back) == bits);
}

TEST_CASE("byte vectors, copied straight from the data, round-trip; a short one is refused") {
  std::vector<std::uint8_t> u(1000);
  for (std::size_t i = 0; i < u.size(); ++i) u[i] = static_cast<std::uint8_t>(i * 31 + 7);
  const std::vector<char> c{'a', '\0', 'z'};
  const std::vector<std::int8_t> s{-1, 0, 1};
  pd::byte_buffer b;
  pd::encode(b, std::make_tuple(u, c, s, std::vector<std::uint8_t>{}));
  const auto back = pd::decode<std::tuple<std::vector<std::uint8_t>, std::vector<char>, std::vector<std::int8_t>,
                                          std::vector<std::uint8_t>>>(b.data(), b.size());
  CHECK(std::get<0>(back) == u);
  CHECK(std::get<1>(back) == c);
  CHECK(std::get<2>(back) == s);
  CHECK(std::get<3>(back).empty());
  pd::byte_buffer cut;
  pd::encode(cut, u);
  CHECK_THROWS_AS(pd::decode<std::vector<std::uint8_t>>(cut.data(), cut.size() - 1), pd::codec_error);
}

namespace {

// Bytes handed out a few at a time, as a job frame streams out of its ring.
class trickle final : public pd::byte_source {
 public:
  explicit trickle(const pd::byte_buffer& b) : at_(b.data()), end_(b.data() + b.size()) {}
  std::pair<const std::byte*, std::size_t> next(std::size_t most) override {
    const std::size_t n = std::min({most, piece_++ % 7 + 1, static_cast<std::size_t>(end_ - at_)});
    REQUIRE(n > 0);  // the archive never asks past what it was told is there
    const std::byte* at = at_;
    at_ += n;
    return {at, n};
  }
  void done() override { ++done_; }
  int done_calls() const { return done_; }

 private:
  const std::byte* at_;
  const std::byte* end_;
  std::size_t piece_ = 0;
  int done_ = 0;
};

}  // namespace

TEST_CASE("a value decodes the same from bytes that come in pieces of 1 to 7 as from one block") {
  std::vector<std::uint8_t> bytes(1000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 31 + 7);
  const auto value = std::make_tuple(order{"ann", {{"x", {1.5, 2.5}, {{"a", 1}}, 7}}, "rush", std::string("r-9"), 3, true},
                                     bytes, std::string(300, 'q'), std::vector<double>{0.25, -1e300});
  pd::byte_buffer b;
  pd::encode(b, value);
  trickle source(b);
  pd::input_archive ar(source, b.size());
  CHECK(pd::decode<std::remove_const_t<decltype(value)>>(ar) == value);
  CHECK(source.done_calls() == 1);  // told once, as soon as the value was whole
}

TEST_CASE("pieces that end before the value does are refused as truncated, and the source is not told it is done") {
  pd::byte_buffer b;
  pd::encode(b, std::vector<std::uint8_t>(100, 9));
  trickle source(b);
  pd::input_archive ar(source, b.size() - 1);  // the frame says one byte less than the value needs
  CHECK_THROWS_AS(pd::decode<std::vector<std::uint8_t>>(ar), pd::codec_error);
  CHECK(source.done_calls() == 0);
}

TEST_CASE("a freed big payload buffer is reused by the next one of about its size, not mapped afresh") {
  const std::byte* first;
  {
    pd::byte_buffer a;
    a.resize(std::size_t{1} << 20);
    first = a.data();
  }
  pd::byte_buffer b;
  b.resize((std::size_t{1} << 20) - 100);
  CHECK(b.data() == first);
  pd::byte_buffer small;
  small.resize(std::size_t{300} << 10);  // a 1 MiB block would waste over half of it
  CHECK(small.data() != first);
  pd::byte_buffer moved = std::move(b);
  CHECK(moved.data() == first);
  CHECK(b.data() != first);
  CHECK(b.size() == 0);
}

TEST_CASE("a tiny value is encoded inside the buffer itself, and moves with it") {
  auto inside = [](const pd::byte_buffer& b) {
    const auto* self = reinterpret_cast<const std::byte*>(&b);
    return b.data() >= self && b.data() < self + sizeof b;
  };
  pd::byte_buffer b;
  pd::encode(b, std::string("world"));
  CHECK(inside(b));
  pd::byte_buffer moved = std::move(b);
  CHECK(inside(moved));
  CHECK(pd::decode<std::string>(moved.data(), moved.size()) == "world");
  CHECK(b.size() == 0);
  pd::encode(moved, std::string(100, 'x'));  // outgrows it: a heap block, the bytes kept
  CHECK(!inside(moved));
  pd::input_archive ar(moved.data(), moved.size());
  std::string first, second;
  ar(first, second);
  CHECK(first == "world");
  CHECK(second == std::string(100, 'x'));
}

TEST_CASE("a bool byte other than 0 or 1 is refused, not read as a bool") {
  pd::byte_buffer b;
  pd::encode(b, std::optional<std::string>("x"));
  b.data()[0] = std::byte{2};  // the optional's has-value flag
  CHECK_THROWS_AS(pd::decode<std::optional<std::string>>(b.data(), b.size()), pd::codec_error);
  pd::byte_buffer flag;
  pd::encode(flag, true);
  flag.data()[0] = std::byte{7};
  CHECK_THROWS_AS(pd::decode<bool>(flag.data(), flag.size()), pd::codec_error);
}

TEST_CASE("JSON strings keep what follows a NUL, in fields, vectors and map keys") {
  const std::string text =
      R"({"text":"ab\u0000cd","list":["x\u0000y",""],"by_name":[{"key":"k\u0000","value":"v\u0000w"}]})";
  const auto l = pd::from_json<labels>(text);
  CHECK(l.text == std::string("ab\0cd", 5));
  REQUIRE(l.list.size() == 2);
  CHECK(l.list[0] == std::string("x\0y", 3));
  REQUIRE(l.by_name.size() == 1);
  CHECK(l.by_name.begin()->first == std::string("k\0", 2));
  CHECK(l.by_name.begin()->second == std::string("v\0w", 3));
  CHECK(pd::to_json(l) == text);
  CHECK(pd::from_json<std::string>(R"("\u0000")") == std::string(1, '\0'));
}

TEST_CASE("a double goes through JSON and back as itself, written in the fewest digits that read back as it") {
  std::mt19937_64 bits(2002);
  std::uniform_real_distribution<double> unit(0, 1);
  for (int i = 0; i < 4004; ++i) {
    double d = unit(bits);
    if (i % 2) {
      const std::uint64_t b = bits();
      std::memcpy(&d, &b, sizeof d);
      if (!std::isfinite(d)) continue;
    }
    char shortest[32];
    const auto end = std::to_chars(shortest, shortest + sizeof shortest, d).ptr;
    const std::string text = pd::to_json(d);
    CHECK(same_double(pd::from_json<double>(text), d));
    CHECK(text.size() <= std::size_t(end - shortest) + 2);  // ".0" may mark an integral double
    CHECK(same_double(pd::from_json<double>(std::string(shortest, end)), d));
  }
  CHECK(pd::to_json(0.1 + 0.2) == "0.30000000000000004");
  CHECK(pd::to_json(8.5744025984476e+19) == "8.5744025984476e+19");  // RapidJSON's Grisu2: 85744025984476000000.0
  CHECK(pd::to_json(6.0) == "6.0");
  CHECK(pd::to_json(-0.0) == "-0.0");
  CHECK(pd::to_json(std::vector<double>{5e-324, 1.7976931348623157e308}) == "[5e-324,1.7976931348623157e+308]");
  CHECK(same_double(pd::from_json<double>("-0.0"), -0.0));
  CHECK(pd::from_json<double>("1e-400") == 0.0);
  CHECK(pd::from_json<double>("1" + std::string(30, '0')) == 1e30);
  CHECK(pd::from_json<std::uint64_t>("18446744073709551615") == std::numeric_limits<std::uint64_t>::max());
  CHECK(pd::from_json<std::int64_t>("-9223372036854775808") == std::numeric_limits<std::int64_t>::min());
}

TEST_CASE("a number out of its field's range does not fit, and says so") {
  CHECK_THROWS_WITH_AS(pd::from_json<double>("1e400"), doctest::Contains("out of the range of a double"), pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::from_json<std::int64_t>("9223372036854775808"), doctest::Contains("range"), pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::from_json<std::uint8_t>("256"), doctest::Contains("range"), pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::from_json<float>("1e39"), doctest::Contains("range"), pd::codec_error);
  CHECK_THROWS_AS(pd::from_json<int>("1.5"), pd::codec_error);
}

TEST_CASE("an infinite or NaN result, or a string that is not UTF-8, cannot be written as JSON, and says so") {
  CHECK_THROWS_WITH_AS(pd::to_json(std::numeric_limits<double>::infinity()),
                       "the result cannot be written as JSON: inf is not a JSON number", pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::to_json(std::vector<double>{1, -std::numeric_limits<double>::infinity()}),
                       "the result cannot be written as JSON: -inf is not a JSON number", pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::to_json(std::nan("")), "the result cannot be written as JSON: NaN is not a JSON number",
                       pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::to_json(std::string("lone \xed\xa0\x80 surrogate")),
                       doctest::Contains("the result cannot be written as JSON: a string is not UTF-8"), pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::to_json(std::string("\xff")), doctest::Contains("not UTF-8"), pd::codec_error);
  CHECK(pd::to_json(std::string("caf\xc3\xa9")) == "\"caf\xc3\xa9\"");
}

TEST_CASE("JSON reads what cereal's JSON archive writes: named fields in any order, unnamed ones in turn") {
  const order o{"ann", {{"x", {1.5, -0.0}, {{"a", 1}}, 7}, {"y", {}, {}, std::nullopt}}, "rush", std::string("r-1"), 3,
                true};
  CHECK(pd::from_json<order>(pd::to_json(o)) == o);
  const auto swapped = pd::from_json<labels>(R"({"by_name":[],"list":["b"],"extra":{"x":[1e400]},"text":"a"})");
  CHECK(swapped == labels{"a", {"b"}, {}});
  CHECK_THROWS_WITH_AS(pd::from_json<labels>(R"({"text":"a","list":[]})"), doctest::Contains("\"by_name\" is missing"),
                       pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::from_json<order>(R"({"customer":"c","lines":[{"value0":"n","value1":[1,"2"]}]})"),
                       doctest::Contains("lines[0].value1[1]: expected a number, got a string"), pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::from_json<labels>("[1, 2]"), doctest::Contains("expected an object"), pd::codec_error);
  CHECK_THROWS_WITH_AS(pd::from_json<labels>(R"({"text":"a")"), doctest::Contains("not JSON"), pd::codec_error);
}
