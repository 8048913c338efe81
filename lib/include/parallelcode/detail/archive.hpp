#pragma once

// cereal archives that write to and read from plain memory, with no std::stream
// in between, and that check every size prefix against the bytes left before
// anything is allocated for it.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <deque>
#include <forward_list>
#include <list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

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

// More bytes for an input_archive whose window ran out: a worker decodes a big job
// frame in place in its ring as the pool writes it, never gathering it into a buffer.
class byte_source {
 public:
  // The next bytes of the frame, at least one and at most `most`; they stay valid
  // until the next call.
  virtual std::pair<const std::byte*, std::size_t> next(std::size_t most) = 0;
  // The value is decoded: the rest of the frame is the source's to drop.
  virtual void done() = 0;

 protected:
  ~byte_source() = default;
};

class input_archive : public cereal::InputArchive<input_archive, cereal::AllowEmptyClassElision> {
 public:
  input_archive(const std::byte* bytes, std::size_t n) : InputArchive(this), at_(bytes), end_(bytes + n) {}
  // n bytes, all of them still to come from source.
  input_archive(byte_source& source, std::size_t n) : InputArchive(this), source_(&source), beyond_(n) {}

  void load_bytes(void* into, std::size_t n) {
    if (n <= window()) {  // the common case: one copy, no call
      if (n) std::memcpy(into, at_, n);
      at_ += n;
      return;
    }
    auto* to = static_cast<std::byte*>(into);
    read_chunks(n, [&](const std::byte* bytes, std::size_t k) {
      std::memcpy(to, bytes, k);
      to += k;
    });
  }
  std::size_t remaining() const noexcept { return window() + beyond_; }
  // Hands the next n bytes to sink(bytes, count), in as few pieces as they lie in.
  template <class Sink>
  void read_chunks(std::size_t n, Sink&& sink) {
    if (n > remaining())
      throw cereal::Exception("truncated: " + std::to_string(n) + " bytes wanted, " +
                              std::to_string(remaining()) + " left");
    for (;;) {
      const std::size_t k = std::min(n, window());
      if (k) sink(at_, k);
      at_ += k;
      n -= k;
      if (n == 0) return;
      const auto [bytes, got] = source_->next(beyond_);
      at_ = bytes;
      end_ = bytes + got;
      beyond_ -= got;
    }
  }
  // The value is whole: a source may drop the rest of its frame now.
  void finish() {
    if (source_) source_->done();
  }

 private:
  std::size_t window() const noexcept { return static_cast<std::size_t>(end_ - at_); }

  const std::byte* at_ = nullptr;
  const std::byte* end_ = nullptr;
  byte_source* source_ = nullptr;
  std::size_t beyond_ = 0;  // bytes past the window, still in the source
};

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_SAVE_FUNCTION_NAME(output_archive& ar, const T& t) {
  ar.save_bytes(std::addressof(t), sizeof(t));
}

template <class T>
std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, T& t) {
  ar.load_bytes(std::addressof(t), sizeof(t));
}

// A bool is one byte, 0 or 1: reading any other value back as a bool is undefined behaviour.
inline void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, bool& b) {
  unsigned char byte = 0;
  ar.load_bytes(&byte, 1);
  if (byte > 1) throw cereal::Exception("corrupt bool: " + std::to_string(byte));
  b = byte != 0;
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

[[noreturn]] inline void corrupt_size(unsigned long long size, std::size_t left) {
  throw cereal::Exception("corrupt size prefix: " + std::to_string(size) + " elements, " + std::to_string(left) +
                          " bytes left");
}

// cereal sizes a string, a bit vector or a hash set from its prefix before reading
// the elements, each of which takes at least a byte: a prefix over the bytes left
// is corrupt and must not reach that allocation.
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, cereal::SizeTag<T>& t) {
  ar(t.size);
  if (static_cast<unsigned long long>(t.size) > ar.remaining()) corrupt_size(t.size, ar.remaining());
}

// Sequences of elements cereal would resize() to the prefix, however large each
// element is: grow them as elements actually decode instead, so memory follows the
// bytes present. Arithmetic elements are checked exactly and read in one go.
inline constexpr std::size_t max_empty_elements = std::size_t{1} << 20;  // they take no bytes at all

template <class T>
std::size_t load_sequence_size(input_archive& ar) {
  cereal::size_type n;
  ar(n);
  const std::size_t left = ar.remaining();
  const bool fits = std::is_empty_v<T> ? n <= std::max(left, max_empty_elements)
                    : std::is_arithmetic_v<T> ? n <= left / sizeof(T)
                                              : n <= left;
  if (!fits) corrupt_size(n, left);
  return static_cast<std::size_t>(n);
}

// Room for n elements, a big block of it on huge pages before anything touches it.
template <class V>
void reserve_fresh(V& v, std::size_t n) {
  if (v.capacity() >= n) return;
  v.reserve(n);  // empty: nothing to copy
  prefer_huge_pages(v.data(), n * sizeof(typename V::value_type));
}

template <class Sequence>
void load_growing(input_archive& ar, Sequence& seq) {
  using T = typename Sequence::value_type;
  const std::size_t n = load_sequence_size<T>(ar);
  seq.clear();
  if constexpr (std::is_arithmetic_v<T> && sizeof(T) == 1 && !std::is_same_v<T, bool> &&
                std::is_same_v<Sequence, std::vector<T, typename Sequence::allocator_type>>) {
    reserve_fresh(seq, n);  // then no zero fill first, and no reallocation as the pieces come
    ar.read_chunks(n, [&](const std::byte* bytes, std::size_t k) {
      const auto* items = reinterpret_cast<const T*>(bytes);  // bytes need no alignment
      seq.insert(seq.end(), items, items + k);
    });
  } else if constexpr (std::is_arithmetic_v<T> && std::is_same_v<Sequence, std::vector<T, typename Sequence::allocator_type>>) {
    reserve_fresh(seq, n);
    seq.resize(n);
    ar.load_bytes(seq.data(), n * sizeof(T));
  } else {
    for (std::size_t i = 0; i < n; ++i) ar(seq.emplace_back());
  }
}

template <class T, class A>
  requires(!std::is_same_v<T, bool>)
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::vector<T, A>& v) {
  load_growing(ar, v);
}

template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::deque<T, A>& d) {
  load_growing(ar, d);
}

template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::list<T, A>& l) {
  load_growing(ar, l);
}

template <class T, class A>
void CEREAL_LOAD_FUNCTION_NAME(input_archive& ar, std::forward_list<T, A>& l) {
  const std::size_t n = load_sequence_size<T>(ar);
  l.clear();
  auto last = l.before_begin();
  for (std::size_t i = 0; i < n; ++i) ar(*(last = l.emplace_after(last)));
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
