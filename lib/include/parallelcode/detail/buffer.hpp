#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <utility>

namespace parallelcode::detail {

// Memory for byte_buffer. Big blocks come from a small cache of freed ones when
// it can: a fresh big block costs a page fault per 4 KiB, more than copying into it.
std::byte* allocate_bytes(std::size_t& capacity);  // at least capacity bytes; says how many
void free_bytes(std::byte* data, std::size_t capacity) noexcept;

// A growable byte buffer that never zero-fills: encoding overwrites every byte anyway.
class byte_buffer {
 public:
  byte_buffer() = default;
  byte_buffer(byte_buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), capacity_(std::exchange(o.capacity_, 0)) {}
  byte_buffer& operator=(byte_buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      capacity_ = std::exchange(o.capacity_, 0);
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
  void release() noexcept {
    if (data_) free_bytes(data_, capacity_);
    data_ = nullptr;
    size_ = capacity_ = 0;
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
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace parallelcode::detail
