#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <cereal/types/array.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/forward_list.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <parallelcode/detail/archive.hpp>
#include <parallelcode/export.hpp>

namespace parallelcode::detail {

// A value could not be encoded or decoded; becomes payload_error for the job.
class PARALLELCODE_API codec_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class T>
void encode(byte_buffer& out, const T& value) {
  try {
    output_archive ar(out);
    ar(value);
  } catch (const std::exception& e) {
    throw codec_error(std::string("cannot encode: ") + e.what());
  } catch (...) {
    throw codec_error("cannot encode: a serialize function threw a non-standard exception");
  }
}

// Decodes the whole of what `ar` reads, then lets its source go.
template <class T>
T decode(input_archive& ar) {
  static_assert(std::is_default_constructible_v<T>,
                "parallelcode: job data and results must be default-constructible to be decoded");
  try {
    T value{};
    ar(value);
    if (ar.remaining() != 0)
      throw std::runtime_error(std::to_string(ar.remaining()) + " bytes left over");
    ar.finish();
    return value;
  } catch (const std::exception& e) {
    throw codec_error(std::string("cannot decode: ") + e.what());
  } catch (...) {
    throw codec_error("cannot decode: a serialize function threw a non-standard exception");
  }
}

template <class T>
T decode(const std::byte* bytes, std::size_t n) {
  input_archive ar(bytes, n);
  return decode<T>(ar);
}

}  // namespace parallelcode::detail
