#pragma once

// The wire frame: a fixed header, then size bytes of payload, padded to 8.
// A frame that fits the ring is written whole and published at once; a larger
// one is streamed, the reader collecting it as the writer makes room.

#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include <parallelcode/detail/buffer.hpp>

#include "ring.hpp"

namespace parallelcode::detail {

enum class frame_type : std::uint16_t {
  job = 1,        // supervisor -> worker: run invoke(fn, payload)
  ready,          // worker -> supervisor: the worker is up
  result,         // worker -> supervisor: the job's encoded result
  failed,         // worker -> supervisor: the job threw; payload: type name, what()
  payload_error,  // worker -> supervisor: data or result would not code; payload: message
};

struct frame_header {
  std::uint32_t magic;
  frame_type type;
  std::uint16_t flags;   // job frames: frame_flag
  std::uint64_t size;    // payload bytes
  std::uint64_t job;     // job id
  std::uint64_t invoke;  // job frames: address of the invoke trampoline
  std::uint64_t fn;      // job frames: the function pointer, or 0 for a lambda
  std::uint64_t rss;     // result frames: the worker's resident bytes, or 0 if not measured
};
static_assert(sizeof(frame_header) == 48);

inline constexpr std::uint32_t frame_magic = 0x31464350;  // "PCF1"

// A job handed ahead to a busy worker waits in its ring; the worker claims it
// before running it, and the pool may steal it back while it is unclaimed (its
// worker stuck in a long job). Both flip a flag in the header in the ring with
// one compare-exchange: whoever is first wins.
enum frame_flag : std::uint16_t { frame_ahead = 1, frame_claimed = 2, frame_stolen = 4 };
// Flips frame_ahead to frame_ahead | flag in the header at `header`; false if the other side won.
bool settle_ahead(std::byte* header, frame_flag flag) noexcept;
// True once the worker claimed the ahead frame at `header`.
bool claimed(const std::byte* header) noexcept;

constexpr std::uint64_t frame_bytes(std::uint64_t payload) { return (sizeof(frame_header) + payload + 7) & ~std::uint64_t{7}; }

inline frame_header make_header(frame_type type, std::uint64_t job, std::uint64_t size) {
  return {frame_magic, type, 0, size, job, 0, 0, 0};
}

// The largest payload a reader accepts: results up to max_payload, and error
// reports (which a worker keeps under error_text_limit) even when max_payload is tiny.
inline constexpr std::size_t error_text_limit = 16 * 1024;
constexpr std::uint64_t frame_limit(std::uint64_t max_payload) {
  return max_payload > 4 * error_text_limit ? max_payload : 4 * error_text_limit;
}

// The ring holds something that is not a frame: the peer is broken.
class protocol_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes the part of a frame from byte `sent` on that fits; returns the new count
// (frame_bytes(h.size) once all of it is in). Publishing is the caller's.
std::uint64_t write_frame(ring_writer& ring, const frame_header& h, const std::byte* payload, std::uint64_t sent);

class frame_reader {
 public:
  static constexpr std::uint64_t stream_from = 64 * 1024;

  // trusted: the writer is the pool, whose sizes need no checking against the bytes
  // that came (a worker's do), so a big payload gets its memory in one go.
  explicit frame_reader(std::uint64_t max_payload, bool trusted = false) : max_payload_(max_payload), trusted_(trusted) {}

  // Takes what the ring has; true once a whole frame is held, or, when `stream`
  // says so, the header of one too big for the ring or of stream_from bytes or
  // more (streaming(): its payload is still in the ring, the caller's to read).
  // Call release() on the ring after. Throws protocol_error on a header that is not one.
  bool poll(ring_reader& ring, bool stream = false);
  bool streaming() const noexcept { return streaming_; }
  const frame_header& header() const noexcept { return header_; }
  const std::byte* payload() const noexcept { return payload_.data(); }
  std::uint64_t payload_size() const noexcept { return header_.size; }

  // Drops the held frame (or a half-read one, when the writer died).
  void next() noexcept;
  // Frees a big payload buffer once its frame is done with.
  void trim() noexcept;

 private:
  std::uint64_t max_payload_;
  bool trusted_;
  frame_header header_{};
  bool have_header_ = false;
  bool streaming_ = false;
  std::uint64_t got_ = 0;  // payload and padding bytes read
  byte_buffer payload_;
};

}  // namespace parallelcode::detail
