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

// One ring of a fresh 4 KiB region, with both ends and a frame reader on it.
struct ring_pair {
  explicit ring_pair(std::uint64_t max_payload = 1 << 20) : reader(max_payload) {}
  pd::region shm{1, 4096};
  pd::ring_writer w{shm.in(0)};
  pd::ring_reader r{shm.in(0)};
  pd::frame_reader reader;
};

std::vector<std::byte> bytes(std::size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + static_cast<std::size_t>(seed)) & 0xff);
  return v;
}

}  // namespace

TEST_CASE("frames wrap round the end of the ring intact") {
  ring_pair ring;
  auto& [shm, w, r, reader] = ring;
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
  ring_pair ring;
  auto& w = ring.w;
  const auto big = bytes(3000, 1);
  const auto h = pd::make_header(pd::frame_type::result, 1, big.size());
  REQUIRE(pd::write_frame(w, h, big.data(), 0) == pd::frame_bytes(big.size()));
  w.publish();
  // 3048 bytes used: a second such frame does not fit and must not start.
  CHECK(pd::write_frame(w, h, big.data(), 0) == 0);
}

TEST_CASE("a frame larger than the ring streams through in pieces") {
  ring_pair ring;
  auto& [shm, w, r, reader] = ring;
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
  {
    ring_pair ring(1000);
    auto h = pd::make_header(pd::frame_type::result, 1, 0);
    h.magic = 0xdeadbeef;
    pd::write_frame(ring.w, h, nullptr, 0);
    ring.w.publish();
    CHECK_THROWS_AS(ring.reader.poll(ring.r), pd::protocol_error);
  }
  {
    ring_pair ring(1000);
    auto big = pd::make_header(pd::frame_type::result, 1, 0);
    big.size = std::uint64_t{1} << 50;  // a lie: no payload follows
    ring.w.write(&big, sizeof big);
    ring.w.publish();
    CHECK_THROWS_AS(ring.reader.poll(ring.r), pd::protocol_error);
  }
  {
    ring_pair ring(1000);
    pd::write_frame(ring.w, pd::make_header(static_cast<pd::frame_type>(77), 1, 0), nullptr, 0);
    ring.w.publish();
    CHECK_THROWS_AS(ring.reader.poll(ring.r), pd::protocol_error);
  }
}
