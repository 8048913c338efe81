#include "frame.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <string>

namespace parallelcode::detail {

namespace {

constexpr std::uint64_t header_bytes = sizeof(frame_header);
constexpr std::size_t keep_buffer_bytes = std::size_t{4} << 20;

bool known(frame_type t) { return t >= frame_type::job && t <= frame_type::payload_error; }

// The header's first word: magic, type and flags, the flags in its top 16 bits.
static_assert(std::endian::native == std::endian::little && offsetof(frame_header, flags) == 6);
constexpr int flags_shift = 48;

std::atomic_ref<std::uint64_t> first_word(const std::byte* header) {
  return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(const_cast<std::byte*>(header)));
}

}  // namespace

bool settle_ahead(std::byte* header, frame_flag flag) noexcept {
  auto word = first_word(header);
  const std::uint64_t rest = word.load() & ~(std::uint64_t{0xffff} << flags_shift);
  std::uint64_t expected = rest | (std::uint64_t{frame_ahead} << flags_shift);
  return word.compare_exchange_strong(expected, expected | (std::uint64_t{flag} << flags_shift));
}

bool claimed(const std::byte* header) noexcept {
  return (first_word(header).load() >> flags_shift) & frame_claimed;
}

std::uint64_t write_frame(ring_writer& ring, const frame_header& h, const std::byte* payload, std::uint64_t sent) {
  const std::uint64_t total = frame_bytes(h.size);
  std::uint64_t room = ring.free_space();
  if (sent == 0) {
    // Whole if it can ever fit, so a small frame never shows up half-written.
    const std::uint64_t need = total <= ring.capacity() ? total : header_bytes;
    if (room < need) return 0;
    ring.write(&h, header_bytes);
    sent = header_bytes;
    room -= header_bytes;
  }
  const std::uint64_t payload_end = header_bytes + h.size;
  if (sent < payload_end && room > 0) {
    const std::uint64_t n = std::min(room, payload_end - sent);
    ring.write(payload + (sent - header_bytes), n);
    sent += n;
    room -= n;
  }
  if (sent >= payload_end && sent < total && room > 0) {
    const std::uint64_t n = std::min(room, total - sent);
    ring.write_zeros(n);
    sent += n;
  }
  return sent;
}

bool frame_reader::poll(ring_reader& ring, bool stream) {
  if (streaming_) return true;
  if (!have_header_) {
    if (ring.available() < header_bytes) return false;
    ring.read(&header_, header_bytes);
    if (header_.magic != frame_magic || !known(header_.type))
      throw protocol_error("not a frame header (magic " + std::to_string(header_.magic) + ", type " +
                           std::to_string(static_cast<unsigned>(header_.type)) + ")");
    if (header_.size > max_payload_)
      throw protocol_error("frame of " + std::to_string(header_.size) + " bytes is over the limit of " +
                           std::to_string(max_payload_));
    have_header_ = true;
    got_ = 0;
    payload_.clear();
    // Big enough that a copy costs more than reading in place; a job handed ahead is
    // claimed whole first (and is small).
    const bool big = frame_bytes(header_.size) > ring.capacity() ||
                     (header_.size >= stream_from && !(header_.flags & frame_ahead));
    if (stream && big) return streaming_ = true;
    if (trusted_) payload_.reserve(frame_bytes(header_.size) - header_bytes);
  }
  const std::uint64_t total = frame_bytes(header_.size) - header_bytes;
  const std::uint64_t n = std::min(total - got_, ring.available());
  if (n) {
    // Memory follows the bytes that came, not the size the header claims: a corrupt
    // header costs no more than what the worker actually wrote (doubling, capped at total).
    if (payload_.capacity() - got_ < n) payload_.reserve(std::min(total, std::max(got_ + n, 2 * payload_.capacity())));
    ring.read(payload_.grow(n), n);
    got_ += n;
  }
  return got_ == total;
}

void frame_reader::next() noexcept {
  have_header_ = false;
  streaming_ = false;
  got_ = 0;
}

void frame_reader::trim() noexcept {
  if (payload_.capacity() > keep_buffer_bytes) payload_.release();
}

}  // namespace parallelcode::detail
