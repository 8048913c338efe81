#include "statm.hpp"

#include <cstdio>
#include <fcntl.h>
#include <unistd.h>

namespace parallelcode::detail {

std::size_t resident_bytes(int statm_fd) noexcept {
  char text[128];
  const ssize_t n = ::pread(statm_fd, text, sizeof text - 1, 0);
  if (n <= 0) return 0;
  text[n] = '\0';
  unsigned long size = 0, resident = 0;
  if (std::sscanf(text, "%lu %lu", &size, &resident) != 2) return 0;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

std::size_t resident_bytes_of(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  const std::size_t bytes = resident_bytes(fd);
  ::close(fd);
  return bytes;
}

}  // namespace parallelcode::detail
