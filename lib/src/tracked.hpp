#pragma once

// Every fd and shared mapping the pools of this process hold. The fork server of
// one pool drops the others': they are no business of its workers, and a copy of
// another pool's socket there would keep that pool's fork server from seeing EOF.
// Lock-free tables: the fork server reads them right after fork(), when a lock
// held by another thread of the host would never be released.

#include <cstddef>
#include <initializer_list>

namespace parallelcode::detail {

void track_fd(int fd) noexcept;
void untrack_fd(int fd) noexcept;
void track_mapping(const void* at, std::size_t size) noexcept;
void untrack_mapping(const void* at) noexcept;

// In a freshly forked child: closes and unmaps everything tracked but what it keeps.
void drop_tracked(std::initializer_list<int> keep_fds, const void* keep_mapping) noexcept;

}  // namespace parallelcode::detail
