#pragma once

// The pool's shared memory: one anonymous mapping made before the first fork, so
// every process of the pool has it at the same address and nothing has a name.
// It holds, per channel (one per worker), a ring of jobs in and a ring of results out.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

#include <boost/interprocess/mapped_region.hpp>

#include "ring.hpp"

namespace parallelcode::detail {

struct region_control {
  std::uint64_t ring_bytes;
  alignas(64) std::atomic<std::uint32_t> supervisor_sleeping{0};  // the supervisor sleeps in epoll
  // Reports the fork server sent: the busy supervisor reads its socket only when this moves.
  alignas(64) std::atomic<std::uint32_t> fork_server_reports{0};
};

struct channel_control {
  ring_control in;   // supervisor -> worker: jobs
  ring_control out;  // worker -> supervisor: results
};

class region {
 public:
  region() = default;
  // Throws std::system_error when the memory cannot be mapped.
  region(unsigned channels, std::size_t ring_bytes);
  region(region&& other) noexcept { *this = std::move(other); }
  region& operator=(region&& other) noexcept;
  ~region();
  region(const region&) = delete;
  region& operator=(const region&) = delete;

  explicit operator bool() const noexcept { return control_ != nullptr; }
  const void* address() const noexcept { return control_; }
  std::size_t bytes() const noexcept { return mapping_.get_size(); }
  std::atomic<std::uint32_t>& supervisor_sleeping() const noexcept { return control_->supervisor_sleeping; }
  std::atomic<std::uint32_t>& fork_server_reports() const noexcept { return control_->fork_server_reports; }
  ring_view in(unsigned channel) const noexcept;
  ring_view out(unsigned channel) const noexcept;

  // Empties both rings of a channel. Only while no process uses them.
  void reset(unsigned channel) noexcept;

 private:
  boost::interprocess::mapped_region mapping_;
  region_control* control_ = nullptr;
  channel_control* channel_controls_ = nullptr;
  std::byte* rings_ = nullptr;
};

}  // namespace parallelcode::detail
