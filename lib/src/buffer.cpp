#include <parallelcode/detail/buffer.hpp>

#include <atomic>
#include <new>

namespace parallelcode::detail {

namespace {

// Freed blocks from 256 KiB to 8 MiB wait here for the next payload of their size,
// at most 4 of them (32 MiB). Lock-free: a fork never finds it locked.
constexpr std::size_t cached_smallest = std::size_t{256} << 10;
constexpr std::size_t cached_largest = std::size_t{8} << 20;
constexpr std::size_t cache_slots = 4;

struct block {
  std::size_t capacity;
};
constexpr std::size_t header = 64;  // keeps the data cache-line aligned

std::atomic<block*> cache[cache_slots];

std::byte* data_of(block* b) { return reinterpret_cast<std::byte*>(b) + header; }
block* block_of(std::byte* data) { return reinterpret_cast<block*>(data - header); }

void destroy(block* b) noexcept { ::operator delete(b, std::align_val_t{header}); }

}  // namespace

// Blocks under cached_smallest are plain heap blocks: an aligned one with a header
// costs glibc a slow memalign path, and nothing here needs to find them again.
std::byte* allocate_bytes(std::size_t& capacity) {
  if (capacity < cached_smallest) return static_cast<std::byte*>(::operator new(capacity));
  if (capacity <= cached_largest) {
    for (auto& slot : cache) {
      block* b = slot.exchange(nullptr, std::memory_order_acquire);
      if (!b) continue;
      if (b->capacity >= capacity && b->capacity / 2 <= capacity) {  // big enough, not wastefully so
        capacity = b->capacity;
        return data_of(b);
      }
      block* none = nullptr;
      if (!slot.compare_exchange_strong(none, b, std::memory_order_release)) destroy(b);
    }
  }
  auto* b = static_cast<block*>(::operator new(header + capacity, std::align_val_t{header}));
  b->capacity = capacity;
  return data_of(b);
}

void free_bytes(std::byte* data, std::size_t capacity) noexcept {
  if (capacity < cached_smallest) {
    ::operator delete(data);
    return;
  }
  block* b = block_of(data);
  if (capacity <= cached_largest) {
    for (auto& slot : cache) {
      block* none = nullptr;
      if (slot.compare_exchange_strong(none, b, std::memory_order_release)) return;
    }
  }
  destroy(b);
}

}  // namespace parallelcode::detail
