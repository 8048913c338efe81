// The frame reader as the supervisor runs it on a worker's results ring: whatever
// bytes a broken worker leaves there, streamed through a real ring in pieces, each
// whole frame then decoded as pool_impl::handle_frame does.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include <parallelcode/detail/codec.hpp>
#include <parallelcode/options.hpp>

#include "frame.hpp"

namespace pd = parallelcode::detail;

// options{} needs it; it lives in supervisor/pool.cpp, which would pull in the whole pool.
unsigned parallelcode::default_workers() noexcept { return 1; }

namespace {

// The pool's own limit: frame_limit of the default max_payload (4 GiB).
const std::uint64_t limit = pd::frame_limit(parallelcode::options{}.max_payload);

void handle(const pd::frame_reader& frame) {
  const pd::frame_header& h = frame.header();
  if (h.size != frame.payload_size() || h.size > limit) std::abort();
  try {
    switch (h.type) {
      case pd::frame_type::result:  // most daemon and JSON results are strings
        (void)pd::decode<std::string>(frame.payload(), frame.payload_size());
        break;
      case pd::frame_type::failed:
        (void)pd::decode<std::pair<std::string, std::string>>(frame.payload(), frame.payload_size());
        break;
      case pd::frame_type::payload_error:
        (void)pd::decode<std::string>(frame.payload(), frame.payload_size());
        break;
      default:  // ready and job frames carry nothing the supervisor decodes
        break;
    }
  } catch (const pd::codec_error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  // Byte 0: the ring, 4 KiB (the smallest a pool makes) to 32 KiB; byte 1: how much the
  // writer puts in at a time (0: all that fits), so frames arrive whole, split or streamed.
  const std::uint64_t capacity = std::uint64_t{4096} << (data[0] & 3);
  const std::size_t chunk = data[1] ? data[1] : capacity;
  data += 2;
  size -= 2;

  auto control = std::make_unique<pd::ring_control>();
  auto bytes = std::make_unique<std::byte[]>(capacity);
  const pd::ring_view view{control.get(), bytes.get(), capacity};
  pd::ring_writer writer(view);
  pd::ring_reader ring(view);
  pd::frame_reader reader(limit);

  std::size_t at = 0;
  while (at < size) {
    const std::size_t n = std::min({size - at, chunk, static_cast<std::size_t>(writer.free_space())});
    if (n == 0) std::abort();  // the reader stopped taking bytes: it would hang the supervisor
    writer.write(data + at, n);
    writer.publish();
    at += n;
    try {
      while (reader.poll(ring)) {
        handle(reader);
        reader.next();
        reader.trim();
      }
    } catch (const pd::protocol_error&) {
      return 0;  // the supervisor kills such a worker
    }
    ring.release();
  }
  return 0;
}
