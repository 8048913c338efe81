#pragma once

// What pool::map returns: a handle on its chunks, and the items' results in input order.

#include <parallelcode/export.hpp>  // first: its C++20 check

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <parallelcode/detail/map.hpp>
#include <parallelcode/errors.hpp>
#include <parallelcode/job_handle.hpp>

namespace parallelcode {

// One item's end: its value, or why it has none.
template <class R>
struct map_result {
  std::optional<R> value;
  // job_failed for what the item's function threw; for every item of a chunk that did
  // not come back, the chunk's error (worker_lost, job_timeout, job_cancelled, ...).
  std::exception_ptr error;
  explicit operator bool() const noexcept { return value.has_value(); }
};

template <class R>
class map_handle {
 public:
  using chunk_handle = job_handle<detail::map_chunk_result<R>>;

  map_handle() = default;
  map_handle(std::vector<chunk_handle> chunks, std::vector<std::size_t> sizes, std::size_t items)
      : chunks_(std::move(chunks)), sizes_(std::move(sizes)), items_(items) {}

  std::size_t size() const noexcept { return items_; }
  std::size_t chunks() const noexcept { return chunks_.size(); }

  // True once every chunk has ended; never throws.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const noexcept {
    using std::chrono::nanoseconds;
    // Clamped in floating point, as job_handle::wait_for does.
    const nanoseconds total = std::chrono::duration<double>(timeout) > std::chrono::hours(24 * 365)
                                  ? nanoseconds::max() / 2
                                  : std::chrono::duration_cast<nanoseconds>(timeout);
    const auto until = std::chrono::steady_clock::now() + total;
    for (const auto& c : chunks_)
      if (!c.wait_for(std::max(nanoseconds(until - std::chrono::steady_clock::now()), nanoseconds::zero()))) return false;
    return true;
  }
  void wait() const {
    for (const auto& c : chunks_) c.wait();
  }
  // Takes back the chunks no worker has yet; their items fail with job_cancelled.
  // True if any was.
  bool cancel() {
    bool any = false;
    for (auto& c : chunks_) any = c.cancel() || any;
    return any;
  }

  // The results in input order; blocks until every chunk ends and throws the first
  // failed item's error. The rvalue form moves them out of the chunks.
  std::vector<R> results() const& {
    std::vector<R> out;
    out.reserve(items_);
    for (std::size_t c = 0; c < chunks_.size(); ++c) append(out, checked(chunks_[c].result(), c));
    return out;
  }
  std::vector<R> results() && {
    std::vector<R> out;
    out.reserve(items_);
    for (std::size_t c = 0; c < chunks_.size(); ++c) append(out, checked(std::move(chunks_[c]).result(), c));
    return out;
  }

  // Each item's value or error, in input order; blocks until every chunk ends.
  std::vector<map_result<R>> outcomes() const {
    std::vector<map_result<R>> out;
    out.reserve(items_);
    for (std::size_t c = 0; c < chunks_.size(); ++c) {
      const std::size_t first = out.size();
      try {
        const auto& chunk = checked(chunks_[c].result(), c);
        for (const R& v : chunk.values) out.push_back({v, nullptr});
        for (const auto& e : chunk.errors) out[first + e.index] = {std::nullopt, item_error(e)};
      } catch (...) {
        for (std::size_t i = 0; i < sizes_[c]; ++i) out.push_back({std::nullopt, std::current_exception()});
      }
    }
    return out;
  }

 private:
  // A chunk's result as its worker sent it: one value an item sent, errors only for
  // those items, or payload_error (the worker's bytes are not trusted).
  template <class Chunk>
  Chunk&& checked(Chunk&& chunk, std::size_t c) const {
    bool fits = chunk.values.size() == sizes_[c];
    for (const auto& e : chunk.errors) fits = fits && e.index < sizes_[c];
    if (!fits) throw payload_error("parallelcode: map: a chunk's result does not match its " + std::to_string(sizes_[c]) + " items");
    return std::forward<Chunk>(chunk);
  }
  static std::exception_ptr item_error(const detail::map_item_error& e) {
    return std::make_exception_ptr(job_failed(e.type, e.message));
  }

  template <class Chunk>
  static void append(std::vector<R>& out, Chunk&& chunk) {
    if (!chunk.errors.empty()) std::rethrow_exception(item_error(chunk.errors.front()));
    if constexpr (std::is_rvalue_reference_v<Chunk&&>)
      out.insert(out.end(), std::make_move_iterator(chunk.values.begin()), std::make_move_iterator(chunk.values.end()));
    else
      out.insert(out.end(), chunk.values.begin(), chunk.values.end());
  }

  std::vector<chunk_handle> chunks_;
  std::vector<std::size_t> sizes_;
  std::size_t items_ = 0;
};

}  // namespace parallelcode
