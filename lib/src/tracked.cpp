#include "tracked.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include <parallelcode/export.hpp>

namespace parallelcode::detail {

namespace {

// Slots hold fd + 1 so that zero-initialized means empty. Full tables stop
// tracking (the cost is a leaked copy in another pool's workers, not a failure).
constexpr std::size_t max_fds = 4096;
constexpr std::size_t max_mappings = 4096;  // a pool's region, and every shared_bytes

std::atomic<int> fds[max_fds];

struct mapping_slot {
  std::atomic<std::uintptr_t> at;
  std::atomic<std::size_t> size;
};
mapping_slot mappings[max_mappings];
// A slot being filled: its size is not written yet. Never a mapping's (page-aligned) address.
constexpr std::uintptr_t filling = 1;

}  // namespace

// Exported: the daemon's own fds (its unique_fd) must be dropped in its workers too.
PARALLELCODE_API void track_fd(int fd) noexcept {
  if (fd < 0) return;
  for (auto& slot : fds) {
    int empty = 0;
    if (slot.compare_exchange_strong(empty, fd + 1)) return;
  }
}

PARALLELCODE_API void untrack_fd(int fd) noexcept {
  if (fd < 0) return;
  for (auto& slot : fds) {
    int mine = fd + 1;
    if (slot.compare_exchange_strong(mine, 0)) return;
  }
}

void track_mapping(const void* at, std::size_t size) noexcept {
  for (auto& slot : mappings) {
    std::uintptr_t empty = 0;
    // Take the slot, then write its size: a size written to a taken slot was another mapping's.
    if (!slot.at.compare_exchange_strong(empty, filling)) continue;
    slot.size.store(size);
    slot.at.store(reinterpret_cast<std::uintptr_t>(at));
    return;
  }
}

void untrack_mapping(const void* at) noexcept {
  for (auto& slot : mappings) {
    std::uintptr_t mine = reinterpret_cast<std::uintptr_t>(at);
    if (slot.at.compare_exchange_strong(mine, 0)) return;
  }
}

void drop_tracked(std::initializer_list<int> keep_fds, const void* keep_mapping) noexcept {
  for (auto& slot : fds) {
    const int fd = slot.exchange(0) - 1;
    if (fd >= 0 && std::find(keep_fds.begin(), keep_fds.end(), fd) == keep_fds.end()) ::close(fd);
  }
  for (auto& slot : mappings) {
    const std::uintptr_t at = slot.at.exchange(0);
    if (at != 0 && at != filling && at != reinterpret_cast<std::uintptr_t>(keep_mapping))
      ::munmap(reinterpret_cast<void*>(at), slot.size.load());
  }
}

}  // namespace parallelcode::detail
