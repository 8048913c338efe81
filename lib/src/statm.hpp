#pragma once

#include <cstddef>
#include <sys/types.h>

namespace parallelcode::detail {

// Resident bytes from an open /proc/<pid>/statm (read from offset 0); 0 if unreadable.
std::size_t resident_bytes(int statm_fd) noexcept;
// Resident bytes of a process now; 0 if it is gone.
std::size_t resident_bytes_of(pid_t pid) noexcept;

}  // namespace parallelcode::detail
