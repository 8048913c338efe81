#pragma once

// A single-producer single-consumer byte ring in shared memory. head and tail
// count bytes forever (64 bits never wrap), so full and empty never look alike
// and no lock is needed: a producer killed mid-write simply never publishes.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

namespace parallelcode::detail {

struct ring_control {
  alignas(64) std::atomic<std::uint64_t> head{0};         // written by the producer
  std::atomic<std::uint32_t> producer_waiting{0};         // the producer sleeps for space
  alignas(64) std::atomic<std::uint64_t> tail{0};         // written by the consumer
  std::atomic<std::uint32_t> consumer_sleeping{0};        // the consumer sleeps for data
};

struct ring_view {
  ring_control* control = nullptr;
  std::byte* data = nullptr;
  std::uint64_t capacity = 0;  // a power of two
};

class ring_writer {
 public:
  ring_writer() = default;
  explicit ring_writer(ring_view v) noexcept : v_(v), head_(v.control->head.load(std::memory_order_relaxed)) {}

  std::uint64_t capacity() const noexcept { return v_.capacity; }
  // seq_cst loads here and in available(): a sleeper stores its flag, then checks
  // the ring; store-then-load needs seq_cst on both sides to be ordered.
  std::uint64_t free_space() const noexcept {
    return v_.capacity - (head_ - v_.control->tail.load(std::memory_order_seq_cst));
  }
  std::uint64_t position() const noexcept { return head_; }
  ring_control& control() const noexcept { return *v_.control; }
  // The byte at a stream position still in the ring (frames start 8-aligned there).
  std::byte* at(std::uint64_t position) const noexcept { return v_.data + (position & (v_.capacity - 1)); }

  // Copies n bytes (n <= free_space()) in; invisible until publish().
  void write(const void* bytes, std::size_t n) noexcept {
    const std::size_t at = head_ & (v_.capacity - 1);
    const std::size_t first = n < v_.capacity - at ? n : v_.capacity - at;
    std::memcpy(v_.data + at, bytes, first);
    std::memcpy(v_.data, static_cast<const std::byte*>(bytes) + first, n - first);
    head_ += n;
  }
  void write_zeros(std::size_t n) noexcept {
    const std::size_t at = head_ & (v_.capacity - 1);
    const std::size_t first = n < v_.capacity - at ? n : v_.capacity - at;
    std::memset(v_.data + at, 0, first);
    std::memset(v_.data, 0, n - first);
    head_ += n;
  }

  // Makes what was written visible. seq_cst pairs with the consumer's
  // "I sleep, then re-check head": one of the two always sees the other.
  void publish() noexcept { v_.control->head.store(head_, std::memory_order_seq_cst); }

 private:
  ring_view v_;
  std::uint64_t head_ = 0;
};

class ring_reader {
 public:
  ring_reader() = default;
  explicit ring_reader(ring_view v) noexcept
      : v_(v), tail_(v.control->tail.load(std::memory_order_relaxed)), released_(tail_) {}

  std::uint64_t available() const noexcept {
    return v_.control->head.load(std::memory_order_seq_cst) - tail_;
  }
  bool empty() const noexcept { return available() == 0; }
  ring_control& control() const noexcept { return *v_.control; }
  std::uint64_t position() const noexcept { return tail_; }
  std::byte* at(std::uint64_t position) const noexcept { return v_.data + (position & (v_.capacity - 1)); }

  // Copies n bytes (n <= available()) out.
  void read(void* into, std::size_t n) noexcept {
    const std::size_t at = tail_ & (v_.capacity - 1);
    const std::size_t first = n < v_.capacity - at ? n : v_.capacity - at;
    std::memcpy(into, v_.data + at, first);
    std::memcpy(static_cast<std::byte*>(into) + first, v_.data, n - first);
    tail_ += n;
  }

  std::uint64_t capacity() const noexcept { return v_.capacity; }
  // The readable bytes from the read position on, as far as the ring's end and at
  // most `most`, left in place; skip() takes them.
  std::pair<const std::byte*, std::size_t> contiguous(std::size_t most) const noexcept {
    const std::size_t at = tail_ & (v_.capacity - 1);
    return {v_.data + at, std::min<std::uint64_t>({available(), v_.capacity - at, most})};
  }
  void skip(std::uint64_t n) noexcept { tail_ += n; }

  // Gives the bytes read back to the producer; false if there were none.
  bool release() noexcept {
    if (tail_ == released_) return false;
    v_.control->tail.store(tail_, std::memory_order_seq_cst);
    released_ = tail_;
    return true;
  }

 private:
  ring_view v_;
  std::uint64_t tail_ = 0;
  std::uint64_t released_ = 0;
};

}  // namespace parallelcode::detail
