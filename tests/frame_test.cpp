// Frames through a ring: whole, wrapped round the end, streamed when larger than
// the ring, and refused when the header is not one.

#include <doctest/doctest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "frame.hpp"
#include "region.hpp"

namespace pd = parallelcode::detail;

namespace {

std::vector<std::byte> bytes(std::size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + static_cast<std::size_t>(seed)) & 0xff);
  return v;
}

}  // namespace

TEST_CASE("frames wrap round the end of the ring intact") {
  pd::region shm(1, 4096);
  pd::ring_writer w(shm.in(0));
  pd::ring_reader r(shm.in(0));
  pd::frame_reader reader(1 << 20);
  for (int i = 0; i < 200; ++i) {
    const auto payload = bytes(static_cast<std::size_t>(100 + i * 7) % 1500, i);
    const auto h = pd::make_header(pd::frame_type::result, static_cast<std::uint64_t>(i), payload.size());
    REQUIRE(pd::write_frame(w, h, payload.data(), 0) == pd::frame_bytes(payload.size()));
    w.publish();
    REQUIRE(reader.poll(r));
    r.release();
    CHECK(reader.header().job == static_cast<std::uint64_t>(i));
    REQUIRE(reader.payload_size() == payload.size());
    CHECK(std::memcmp(reader.payload(), payload.data(), payload.size()) == 0);
    reader.next();
  }
}

TEST_CASE("a frame that fits the ring is written whole or not at all") {
  pd::region shm(1, 4096);
  pd::ring_writer w(shm.in(0));
  const auto big = bytes(3000, 1);
  const auto h = pd::make_header(pd::frame_type::result, 1, big.size());
  REQUIRE(pd::write_frame(w, h, big.data(), 0) == pd::frame_bytes(big.size()));
  w.publish();
  // 3048 bytes used: a second such frame does not fit and must not start.
  CHECK(pd::write_frame(w, h, big.data(), 0) == 0);
}

TEST_CASE("a frame larger than the ring streams through in pieces") {
  pd::region shm(1, 4096);
  pd::ring_writer w(shm.in(0));
  pd::ring_reader r(shm.in(0));
  pd::frame_reader reader(1 << 20);
  const auto payload = bytes(100000, 3);
  const auto h = pd::make_header(pd::frame_type::result, 9, payload.size());
  std::uint64_t sent = 0;
  bool whole = false;
  int rounds = 0;
  while (!whole) {
    REQUIRE(++rounds < 1000);
    sent = pd::write_frame(w, h, payload.data(), sent);
    w.publish();
    whole = reader.poll(r);
    r.release();
  }
  CHECK(sent == pd::frame_bytes(payload.size()));
  CHECK(rounds > 20);
  CHECK(std::memcmp(reader.payload(), payload.data(), payload.size()) == 0);
}

TEST_CASE("a header with a bad magic or type, or over the size limit, is a protocol_error") {
  pd::region shm(1, 4096);
  pd::ring_writer w(shm.in(0));
  pd::ring_reader r(shm.in(0));
  pd::frame_reader reader(1000);

  auto h = pd::make_header(pd::frame_type::result, 1, 0);
  h.magic = 0xdeadbeef;
  pd::write_frame(w, h, nullptr, 0);
  w.publish();
  CHECK_THROWS_AS(reader.poll(r), pd::protocol_error);

  pd::region shm2(1, 4096);
  pd::ring_writer w2(shm2.in(0));
  pd::ring_reader r2(shm2.in(0));
  pd::frame_reader reader2(1000);
  auto big = pd::make_header(pd::frame_type::result, 1, 0);
  big.size = std::uint64_t{1} << 50;  // a lie: no payload follows
  w2.write(&big, sizeof big);
  w2.publish();
  CHECK_THROWS_AS(reader2.poll(r2), pd::protocol_error);

  pd::region shm3(1, 4096);
  pd::ring_writer w3(shm3.in(0));
  pd::ring_reader r3(shm3.in(0));
  pd::frame_reader reader3(1000);
  auto odd = pd::make_header(static_cast<pd::frame_type>(77), 1, 0);
  pd::write_frame(w3, odd, nullptr, 0);
  w3.publish();
  CHECK_THROWS_AS(reader3.poll(r3), pd::protocol_error);
}
