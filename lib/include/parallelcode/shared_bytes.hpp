#pragma once

// Memory a job reads and writes in place: a shared_bytes in a job's data travels as
// a handle, and the worker maps the caller's very pages instead of decoding a copy.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <vector>

#include <sys/types.h>

#include <parallelcode/export.hpp>

namespace parallelcode {

namespace detail {
struct shared_segment;

// What a shared_bytes travels as. The worker opens the memfd through
// /proc/<owner>/fd/<fd> and checks its name and size against id, token and size.
struct shared_handle {
  std::int32_t owner = 0;  // the pid that made it
  std::int32_t fd = -1;
  std::uint64_t id = 0;  // 0: an empty shared_bytes
  std::uint64_t token = 0;
  std::uint64_t size = 0;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(owner, fd, id, token, size);
  }
};

// The segments a job's data holds while the job lives, so they outlast the caller's
// copies; and, when its result decodes, the only ones a worker may hand back.
using shared_pins = std::vector<std::shared_ptr<shared_segment>>;

// While it lives, shared_bytes encoded on this thread pin their memory to pins,
// and shared_bytes decoded on it must be among them.
class PARALLELCODE_API pin_scope {
 public:
  explicit pin_scope(shared_pins& pins) noexcept;
  ~pin_scope();
  pin_scope(const pin_scope&) = delete;
  pin_scope& operator=(const pin_scope&) = delete;

 private:
  shared_pins* outer_;
};
}  // namespace detail

// Bytes shared with the pool's workers: a job given a shared_bytes reads and
// writes the caller's memory (a memfd, mapped in the worker when the job's data
// decodes), not a copy of it. Copies are references to the same bytes, as with a
// shared_ptr; the memory goes once the last copy in any process is gone: the
// caller's, the pool's (it holds one until the job ends, a worker's death and
// free() included) and the worker's (until the job returns, or the worker dies).
//
// A worker may return the shared_bytes it was given (in its result); one it made
// itself, or a forged handle, fails the job with payload_error. The bytes cross
// processes of one machine only: a remote queue cannot carry them.
class PARALLELCODE_API shared_bytes {
 public:
  shared_bytes() noexcept = default;  // empty: no memory
  // size bytes, zeroed. Throws std::system_error if the memory cannot be had.
  explicit shared_bytes(std::size_t size);

  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<std::byte> bytes() const noexcept { return {data_, size_}; }
  // The bytes as elements of T (page-aligned); throws std::invalid_argument if the
  // size is not a multiple of sizeof(T).
  template <class T>
  std::span<T> as() const {
    if (size_ % sizeof(T) != 0) throw std::invalid_argument("parallelcode: shared_bytes: size not a multiple of the element's");
    return {reinterpret_cast<T*>(data_), size_ / sizeof(T)};
  }

  template <class Archive>
  void save(Archive& ar) const {
    ar(handle());
  }
  template <class Archive>
  void load(Archive& ar) {
    detail::shared_handle h;
    ar(h);
    *this = from_handle(h);
  }

  // Pins the memory to the current pin_scope, if any, and says where it is.
  detail::shared_handle handle() const;
  // The memory a handle names: in the pool's process, one the current pin_scope
  // holds; elsewhere (a worker), the memfd mapped anew. Throws std::runtime_error
  // for a handle that names neither.
  static shared_bytes from_handle(const detail::shared_handle& h);

 private:
  explicit shared_bytes(std::shared_ptr<detail::shared_segment> segment) noexcept;

  std::shared_ptr<detail::shared_segment> segment_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace parallelcode
