#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>

namespace parallelcode::detail {

// A growable byte buffer that never zero-fills: encoding overwrites every byte anyway.
class byte_buffer {
 public:
  byte_buffer() = default;
  byte_buffer(byte_buffer&&) noexcept = default;
  byte_buffer& operator=(byte_buffer&&) noexcept = default;
  byte_buffer(const byte_buffer&) = delete;
  byte_buffer& operator=(const byte_buffer&) = delete;

  std::byte* data() noexcept { return data_.get(); }
  const std::byte* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }

  void clear() noexcept { size_ = 0; }
  void release() noexcept { data_.reset(); size_ = capacity_ = 0; }

  void reserve(std::size_t n) {
    if (n <= capacity_) return;
    auto bigger = std::make_unique_for_overwrite<std::byte[]>(n);
    if (size_) std::memcpy(bigger.get(), data_.get(), size_);
    data_ = std::move(bigger);
    capacity_ = n;
  }

  // Makes n more bytes and returns where they start.
  std::byte* grow(std::size_t n) {
    if (capacity_ - size_ < n) reserve(std::max({capacity_ * 2, size_ + n, std::size_t{256}}));
    std::byte* at = data_.get() + size_;
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
  std::unique_ptr<std::byte[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace parallelcode::detail
