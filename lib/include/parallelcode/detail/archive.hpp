#pragma once

// cereal archives that write to and read from plain memory, with no std::stream
// in between, and that check every size prefix against the bytes left before
// anything is allocated for it.

#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>

#include <cereal/cereal.hpp>

#include <parallelcode/detail/buffer.hpp>

namespace parallelcode::detail {

class output_archive : public cereal::OutputArchive<output_archive, cereal::AllowEmptyClassElision> {
 public:
  explicit output_archive(byte_buffer& out) : OutputArchive(this), out_(out) {}
  void save_bytes(const void* bytes, std::size_t n) { out_.append(bytes, n); }

 private:
  byte_buffer& out_;
};

class input_archive : public cereal::InputArchive<input_archive, cereal::AllowEmptyClassElision> {
 public:
  input_archive(const std::byte* bytes, std::size_t n) : InputArchive(this), at_(bytes), end_(bytes + n) {}

  void load_bytes(void* into, std::size_t n) {
    if (n > remaining())
      throw cereal::Exception("truncated: " + std::to_string(n) + " bytes wanted, " +
                              std::to_string(remaining()) + " left");
    if (n) std::memcpy(into, at_, n);
    at_ += n;
  }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - at_); }

 private:
  const std::byte* at_;
  const std::byte* end_;
};

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const T& t) {
  ar.save_bytes(std::addressof(t), sizeof(t));
}

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, T& t) {
  ar.load_bytes(std::addressof(t), sizeof(t));
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const cereal::NameValuePair<T>& t) {
  ar(t.value);
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const cereal::SizeTag<T>& t) {
  ar(t.size);
}

// cereal resizes a container to its size prefix before reading the elements:
// an element takes at least one byte (empty classes aside), so a prefix over the
// bytes left is corrupt and must not reach that allocation.
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::SizeTag<T>& t) {
  ar(t.size);
  if (static_cast<unsigned long long>(t.size) > ar.remaining())
    throw cereal::Exception("corrupt size prefix: " + std::to_string(t.size) + " elements, " +
                            std::to_string(ar.remaining()) + " bytes left");
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const cereal::BinaryData<T>& bd) {
  ar.save_bytes(bd.data, static_cast<std::size_t>(bd.size));
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::BinaryData<T>& bd) {
  ar.load_bytes(bd.data, static_cast<std::size_t>(bd.size));
}

}  // namespace parallelcode::detail

CEREAL_REGISTER_ARCHIVE(parallelcode::detail::output_archive)
CEREAL_REGISTER_ARCHIVE(parallelcode::detail::input_archive)
CEREAL_SETUP_ARCHIVE_TRAITS(parallelcode::detail::input_archive, parallelcode::detail::output_archive)
