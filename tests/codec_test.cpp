// The cereal archives: values round-trip, and corrupt bytes are refused before
// they can make a large allocation.

#include <doctest/doctest.h>

#include <cstdint>
#include <array>
#include <cstring>
#include <deque>
#include <forward_list>
#include <list>
#include <tuple>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <parallelcode/detail/codec.hpp>

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
