#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <utility>

#include <parallelcode/export.hpp>

namespace parallelcode::detail {

// Memory for byte_buffer. Big blocks come from a small cache of freed ones when
// it can: a fresh big block costs a page fault per 4 KiB, more than copying into it.
PARALLELCODE_API std::byte* allocate_bytes(std::size_t& capacity);  // at least capacity bytes; says how many
PARALLELCODE_API void free_bytes(std::byte* data, std::size_t capacity) noexcept;
// Asks for huge pages behind the untouched memory [at, at + n) (its whole 2 MiB
// pages): a fresh gigabyte then faults 512 times, not 262,144. Only from 4 MiB on.
PARALLELCODE_API void prefer_huge_pages(void* at, std::size_t n) noexcept;
inline constexpr std::size_t huge_pages_from = std::size_t{4} << 20;
// Gives the cached big blocks back; the pool's thread calls it once the pool idles
// (exported for tests/soak's leak check).
PARALLELCODE_API void trim_buffer_cache() noexcept;

// A growable byte buffer that never zero-fills: encoding overwrites every byte anyway.
// The first bytes live in the buffer itself: a tiny job's data or result costs no
// allocation (a malloc here, a free on another thread there, on every job).
class byte_buffer {
 public:
  static constexpr std::size_t inline_capacity = 48;

  byte_buffer() = default;
  byte_buffer(byte_buffer&& o) noexcept { take(o); }
  byte_buffer& operator=(byte_buffer&& o) noexcept {
    if (this != &o) {
      release();
      take(o);
    }
    return *this;
  }
  byte_buffer(const byte_buffer&) = delete;
  byte_buffer& operator=(const byte_buffer&) = delete;
  ~byte_buffer() { release(); }

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }

  void clear() noexcept { size_ = 0; }
  // Empties it and gives back any memory it allocated.
  void release() noexcept {
    if (data_ != inline_) free_bytes(data_, capacity_);
    data_ = inline_;
    size_ = 0;
    capacity_ = inline_capacity;
  }

  void reserve(std::size_t n) {
    if (n <= capacity_) return;
    std::size_t got = n;
    std::byte* bigger = allocate_bytes(got);
    if (size_) std::memcpy(bigger, data_, size_);
    const std::size_t size = size_;
    release();
    data_ = bigger;
    size_ = size;
    capacity_ = got;
  }

  // Makes n more bytes and returns where they start.
  std::byte* grow(std::size_t n) {
    if (capacity_ - size_ < n) reserve(std::max({capacity_ * 2, size_ + n, std::size_t{256}}));
    std::byte* at = data_ + size_;
    size_ += n;
    return at;
  }

  void resize(std::size_t n) {
    reserve(n);
    size_ = n;
  }

  void append(const void* bytes, std::size_t n) {
    if (n) std::memcpy(grow(n), bytes, n);
  }

 private:
  // Leaves o empty, inline.
  void take(byte_buffer& o) noexcept {
    if (o.data_ == o.inline_) {
      std::memcpy(inline_, o.inline_, o.size_);
    } else {
      data_ = o.data_;
      capacity_ = o.capacity_;
    }
    size_ = o.size_;
    o.data_ = o.inline_;
    o.size_ = 0;
    o.capacity_ = inline_capacity;
  }

  std::byte* data_ = inline_;
  std::size_t size_ = 0;
  std::size_t capacity_ = inline_capacity;
  alignas(16) std::byte inline_[inline_capacity];
};

}  // namespace parallelcode::detail
