// shared_bytes: a memfd per buffer, mapped where it was made and, on demand, in workers.
//
// Why a memfd reached through /proc/<owner>/fd and not the alternatives: an arena
// mapped before the fork would fix its size at start(), and passing fds over a
// socket would need one to every worker, through the fork server; pidfd_getfd()
// needs ptrace rights over the owner that a child does not have under Yama. Opening
// /proc/<pid>/fd/<n> needs only the same user, and takes microseconds.

#include <parallelcode/shared_bytes.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include "tracked.hpp"

namespace parallelcode {

namespace detail {

struct shared_segment {
  shared_segment() = default;
  shared_segment(const shared_segment&) = delete;
  shared_segment& operator=(const shared_segment&) = delete;
  ~shared_segment() {
    // A fork's copy (the fork server dropped its fd and mapping): the numbers are not its own.
    if (::getpid() != holder) return;
    if (at) {
      untrack_mapping(at);
      ::munmap(at, size);
    }
    if (fd >= 0) {
      untrack_fd(fd);
      ::close(fd);
    }
  }
  void own_fd(int f) noexcept {
    fd = f;
    track_fd(fd);  // a fork server started later closes it
  }

  int fd = -1;
  void* at = nullptr;
  std::size_t size = 0;
  shared_handle handle;
  pid_t holder = ::getpid();  // the process this mapping and fd belong to
};

namespace {

thread_local shared_pins* current_pins = nullptr;

std::string memfd_name(std::uint64_t id, std::uint64_t token) {
  char name[64];
  std::snprintf(name, sizeof name, "parallelcode-%016llx-%016llx", static_cast<unsigned long long>(id),
                static_cast<unsigned long long>(token));
  return name;
}

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::system_category(), what); }

std::uint64_t random_token() {
  std::uint64_t token = 0;
  for (std::size_t got = 0; got < sizeof token;) {
    const ssize_t n = ::getrandom(reinterpret_cast<char*>(&token) + got, sizeof token - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("parallelcode: shared_bytes: getrandom");
    got += static_cast<std::size_t>(n);
  }
  return token;
}

void map(shared_segment& s, const char* what) {
  if (s.size == 0) return;
  void* at = ::mmap(nullptr, s.size, PROT_READ | PROT_WRITE, MAP_SHARED, s.fd, 0);
  if (at == MAP_FAILED) fail(what);
  s.at = at;
  track_mapping(at, s.size);  // a fork server started later drops it with the fd
}

[[noreturn]] void refuse(const shared_handle& h, const std::string& why) {
  throw std::runtime_error("parallelcode: shared_bytes handle " + std::to_string(h.id) + " of process " +
                           std::to_string(h.owner) + " refused: " + why);
}

// The memory of a handle decoded outside any pin_scope: in a worker, the pool's memfd.
std::shared_ptr<shared_segment> open_handle(const shared_handle& h) {
  if (h.owner <= 0 || h.fd < 0) refuse(h, "no such process or fd");
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/fd/%d", static_cast<int>(h.owner), static_cast<int>(h.fd));
  auto s = std::make_shared<shared_segment>();
  s->own_fd(::open(path, O_RDWR | O_CLOEXEC));
  if (s->fd < 0) refuse(h, std::string("cannot open ") + path + ": " + std::strerror(errno));
  // What we opened, not what the path named a moment ago: the fd may have been reused.
  char self[64];
  std::snprintf(self, sizeof self, "/proc/self/fd/%d", s->fd);
  char target[256];
  const ssize_t n = ::readlink(self, target, sizeof target - 1);
  const std::string expect = "/memfd:" + memfd_name(h.id, h.token);
  if (n < 0 || std::string(target, static_cast<std::size_t>(n)).rfind(expect, 0) != 0)
    refuse(h, "its fd is not that memory");
  struct stat st{};
  if (::fstat(s->fd, &st) != 0 || static_cast<std::uint64_t>(st.st_size) != h.size)
    refuse(h, "its size does not match");
  s->size = static_cast<std::size_t>(h.size);
  s->handle = h;
  map(*s, "parallelcode: shared_bytes: mmap of a handle");
  untrack_fd(s->fd);  // the mapping keeps the memory: a job of many buffers holds no fds
  ::close(std::exchange(s->fd, -1));
  return s;
}

}  // namespace

pin_scope::pin_scope(shared_pins& pins) noexcept : outer_(std::exchange(current_pins, &pins)) {}
pin_scope::~pin_scope() { current_pins = outer_; }

}  // namespace detail

shared_bytes::shared_bytes(std::size_t size) {
  if (size == 0) return;
  static std::atomic<std::uint64_t> next_id{1};
  auto s = std::make_shared<detail::shared_segment>();
  s->handle.owner = static_cast<std::int32_t>(::getpid());
  s->handle.id = next_id.fetch_add(1, std::memory_order_relaxed);
  s->handle.token = detail::random_token();
  s->handle.size = size;
  s->size = size;
  const std::string name = detail::memfd_name(s->handle.id, s->handle.token);
  s->own_fd(::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (s->fd < 0) detail::fail("parallelcode: shared_bytes: memfd_create");
  if (::ftruncate(s->fd, static_cast<off_t>(size)) != 0) detail::fail("parallelcode: shared_bytes: ftruncate");
  // A worker may write the bytes but never resize them: a shrink would SIGBUS us.
  if (::fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    detail::fail("parallelcode: shared_bytes: sealing");
  s->handle.fd = s->fd;
  detail::map(*s, "parallelcode: shared_bytes: mmap");
  *this = shared_bytes(std::move(s));
}

shared_bytes::shared_bytes(std::shared_ptr<detail::shared_segment> segment) noexcept
    : segment_(std::move(segment)),
      data_(segment_ ? static_cast<std::byte*>(segment_->at) : nullptr),
      size_(segment_ ? segment_->size : 0) {}

detail::shared_handle shared_bytes::handle() const {
  if (!segment_) return {};
  if (detail::current_pins) {
    auto& pins = *detail::current_pins;
    if (std::find(pins.begin(), pins.end(), segment_) == pins.end()) pins.push_back(segment_);
  }
  return segment_->handle;
}

shared_bytes shared_bytes::from_handle(const detail::shared_handle& h) {
  if (h.id == 0) {
    if (h.size != 0) detail::refuse(h, "an empty handle with a size");
    return {};
  }
  if (detail::current_pins) {
    for (const auto& s : *detail::current_pins)
      if (s->handle.id == h.id && s->handle.token == h.token && s->handle.owner == h.owner && s->handle.fd == h.fd &&
          s->handle.size == h.size)
        return shared_bytes(s);
    detail::refuse(h, "the job was not given it");
  }
  return shared_bytes(detail::open_handle(h));
}

}  // namespace parallelcode
