#include <parallelcode/detail/buffer.hpp>

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <new>

namespace parallelcode::detail {

namespace {

// Freed blocks from 256 KiB to 8 MiB wait here for the next payload of their size,
// up to 64 MiB in all: a host that queues big jobs faster than they go out then
// copies into memory it already has, not into fresh pages (a page fault per 4 KiB
// costs more than the copy). Lock-free: a fork never finds it locked.
constexpr std::size_t cached_smallest = std::size_t{256} << 10;
constexpr std::size_t cached_largest = std::size_t{8} << 20;
constexpr std::size_t cached_bytes_limit = std::size_t{64} << 20;
constexpr std::size_t cache_slots = 64;

struct block {
  std::size_t capacity;
};
constexpr std::size_t header = 64;  // keeps the data cache-line aligned

std::atomic<block*> cache[cache_slots];
std::atomic<std::size_t> cached_bytes{0};

std::byte* data_of(block* b) { return reinterpret_cast<std::byte*>(b) + header; }
block* block_of(std::byte* data) { return reinterpret_cast<block*>(data - header); }

void destroy(block* b) noexcept { ::operator delete(b, std::align_val_t{header}); }

// Into a free slot, if the cache has room for it; false if not.
bool keep(block* b) noexcept {
  if (cached_bytes.fetch_add(b->capacity, std::memory_order_relaxed) + b->capacity > cached_bytes_limit) {
    cached_bytes.fetch_sub(b->capacity, std::memory_order_relaxed);
    return false;
  }
  for (auto& slot : cache) {
    block* none = nullptr;
    if (slot.load(std::memory_order_relaxed) == nullptr &&
        slot.compare_exchange_strong(none, b, std::memory_order_release))
      return true;
  }
  cached_bytes.fetch_sub(b->capacity, std::memory_order_relaxed);
  return false;
}

}  // namespace

// Blocks under cached_smallest are plain heap blocks: an aligned one with a header
// costs glibc a slow memalign path, and nothing here needs to find them again.
std::byte* allocate_bytes(std::size_t& capacity) {
  if (capacity < cached_smallest) return static_cast<std::byte*>(::operator new(capacity));
  if (capacity <= cached_largest && cached_bytes.load(std::memory_order_relaxed) >= capacity) {
    for (auto& slot : cache) {
      if (slot.load(std::memory_order_relaxed) == nullptr) continue;
      block* b = slot.exchange(nullptr, std::memory_order_acquire);
      if (!b) continue;
      cached_bytes.fetch_sub(b->capacity, std::memory_order_relaxed);
      if (b->capacity >= capacity && b->capacity / 2 <= capacity) {  // big enough, not wastefully so
        capacity = b->capacity;
        return data_of(b);
      }
      if (!keep(b)) destroy(b);
    }
  }
  auto* b = static_cast<block*>(::operator new(header + capacity, std::align_val_t{header}));
  b->capacity = capacity;
  prefer_huge_pages(data_of(b), capacity);
  return data_of(b);
}

void prefer_huge_pages(void* at, std::size_t n) noexcept {
  if (n < huge_pages_from) return;
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  const auto begin = (reinterpret_cast<std::uintptr_t>(at) + huge - 1) & ~(huge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(at) + n) & ~(huge - 1);
  // Advice only: without transparent huge pages it fails, and 4 KiB pages do.
  if (begin < end) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

void free_bytes(std::byte* data, std::size_t capacity) noexcept {
  if (capacity < cached_smallest) {
    ::operator delete(data);
    return;
  }
  block* b = block_of(data);
  if (capacity > cached_largest || !keep(b)) destroy(b);
}

void trim_buffer_cache() noexcept {
  for (auto& slot : cache) {
    if (block* b = slot.exchange(nullptr, std::memory_order_acquire)) {
      cached_bytes.fetch_sub(b->capacity, std::memory_order_relaxed);
      destroy(b);
    }
  }
}

}  // namespace parallelcode::detail
