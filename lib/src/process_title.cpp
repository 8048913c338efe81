#include "process_title.hpp"

#include <sys/prctl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <parallelcode/process_names.hpp>

extern char** environ;

namespace parallelcode {

namespace {

// argv's strings and then environ's lie end to end; /proc/PID/cmdline reads from
// there (past the end of argv too, when its last byte is no longer a NUL).
char* title_area = nullptr;
std::size_t title_room = 0;

}  // namespace

void name_processes(int argc, char** argv) {
  if (title_area || argc < 1 || !argv || !argv[0]) return;
  char* begin = argv[0];
  char* end = begin + std::strlen(begin) + 1;
  for (int i = 1; i < argc; ++i)
    if (argv[i] == end) end = argv[i] + std::strlen(argv[i]) + 1;
  std::size_t count = 0;
  for (char** e = environ; e && *e; ++e, ++count)
    if (*e == end) end = *e + std::strlen(*e) + 1;
  // The environment moves to the heap, so its old home can hold a title.
  auto** moved = static_cast<char**>(std::malloc((count + 1) * sizeof(char*)));
  if (!moved) return;
  for (std::size_t i = 0; i < count; ++i) moved[i] = ::strdup(environ[i]);
  moved[count] = nullptr;
  environ = moved;
  title_area = begin;
  title_room = static_cast<std::size_t>(end - begin);
}

namespace detail {

void set_process_title(const char* comm, const char* title) noexcept {
  ::prctl(PR_SET_NAME, comm);
  if (!title_area) return;
  const std::size_t n = std::min(std::strlen(title), title_room - 1);
  std::memcpy(title_area, title, n);
  std::memset(title_area + n, 0, title_room - n);
}

}  // namespace detail
}  // namespace parallelcode
