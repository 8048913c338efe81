#include <parallelcode/detail/map.hpp>

#include <algorithm>

#include "demangle.hpp"

namespace parallelcode::detail {

std::string readable_type_name(const std::type_info& t) { return demangle(t.name()); }

std::size_t map_chunk_size(std::size_t items, std::size_t slots, std::size_t probe_items,
                           std::chrono::nanoseconds probe_wall) noexcept {
  using std::chrono::nanoseconds;
  // A chunk's round trip costs a few microseconds: a millisecond of work hides it.
  constexpr nanoseconds work_per_chunk = std::chrono::milliseconds(1);
  // A probe still out when its wait ended gives a lower bound, which is as good here.
  const nanoseconds per_item =
      std::max(nanoseconds(1), probe_wall / static_cast<nanoseconds::rep>(std::max<std::size_t>(1, probe_items)));
  std::size_t size = static_cast<std::size_t>(std::max<nanoseconds::rep>(1, work_per_chunk / per_item));
  if (items > 0) {
    const std::size_t fair = (items + 4 * slots - 1) / (4 * std::max<std::size_t>(1, slots));
    size = std::min(size, std::max<std::size_t>(1, fair));
  }
  return std::min<std::size_t>(size, std::size_t{1} << 20);  // bounds one chunk's memory whatever the estimate
}

}  // namespace parallelcode::detail
