#pragma once

// pool::map's chunks: many items in one job, run one by one in the worker, each
// item's exception caught and sent back beside the other items' results.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include <parallelcode/detail/invoke.hpp>
#include <parallelcode/export.hpp>

namespace parallelcode::detail {

template <class D>
struct map_chunk {
  std::uintptr_t fn = 0;  // the function's address, as a job carries it (invoke.hpp)
  std::vector<D> items;
  template <class A>
  void serialize(A& a) {
    a(fn, items);
  }
};

// An item whose function threw: where it is in its chunk, and what it threw.
struct map_item_error {
  std::uint64_t index = 0;
  std::string type;
  std::string message;
  template <class A>
  void serialize(A& a) {
    a(index, type, message);
  }
};

template <class R>
struct map_chunk_result {
  std::vector<R> values;  // one an item; a failed item's is R{}
  std::vector<map_item_error> errors;
  template <class A>
  void serialize(A& a) {
    a(values, errors);
  }
};

// A thrown type's name as job_failed gives it (std::out_of_range, not St12out_of_range).
PARALLELCODE_API std::string readable_type_name(const std::type_info& t);

template <class F, class D>
map_chunk_result<job_result_t<F, D>> run_map_chunk(map_chunk<D>&& chunk) {
  map_chunk_result<job_result_t<F, D>> out;
  out.values.resize(chunk.items.size());
  for (std::size_t i = 0; i < chunk.items.size(); ++i) {
    try {
      out.values[i] = call<F>(chunk.fn, std::move(chunk.items[i]));
    } catch (const std::exception& e) {
      out.errors.push_back({i, readable_type_name(typeid(e)), e.what()});
    } catch (...) {
      out.errors.push_back({i, "unknown exception", ""});
    }
  }
  return out;
}

// Items a chunk, from a probe chunk's wall time (submit to end, or to the end of the
// wait for it): about a millisecond of work a chunk, but at least four chunks a slot
// of the `items` left (0: unknown) so that the slots finish together.
PARALLELCODE_API std::size_t map_chunk_size(std::size_t items, std::size_t slots, std::size_t probe_items,
                                            std::chrono::nanoseconds probe_wall) noexcept;

}  // namespace parallelcode::detail
