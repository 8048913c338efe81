#pragma once

// How a job crosses into a worker: the frame carries the address of invoke<F, D>,
// which the worker (a fork of this very image) calls to decode, run and encode.

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include <parallelcode/detail/codec.hpp>

namespace parallelcode::detail {

// data: the job's bytes, in memory or still streaming in from its ring.
using invoke_fn = void (*)(std::uintptr_t fn, input_archive& data, byte_buffer& out);

template <class F>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

// A stateless callable: a function pointer, or a class with no state to lose
// in the fork (a captureless lambda).
template <class F>
inline constexpr bool is_job_function_v =
    is_function_pointer_v<F> ||
    (std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F>);

template <class F, class D>
using job_result_t = std::remove_cvref_t<std::invoke_result_t<F&, D&&>>;

// What a job's data travels as: its own type, but text as std::string (a string
// literal or a char pointer has nothing cereal could send).
template <class T>
using data_t = std::conditional_t<std::is_convertible_v<std::decay_t<T>, const char*>, std::string, std::remove_cvref_t<T>>;

template <class F, class D>
decltype(auto) call(std::uintptr_t fn, D&& data) {
  if constexpr (is_function_pointer_v<F>)
    return reinterpret_cast<F>(fn)(std::forward<D>(data));
  else
    return F{}(std::forward<D>(data));
}

template <class F, class D>
void invoke(std::uintptr_t fn, input_archive& data, byte_buffer& out) {
  D arg = decode<D>(data);
  if constexpr (std::is_void_v<job_result_t<F, D>>) {
    call<F>(fn, std::move(arg));
  } else {
    const job_result_t<F, D> result = call<F>(fn, std::move(arg));
    encode(out, result);
  }
}

template <class F>
std::uintptr_t function_address(F fn) noexcept {
  if constexpr (is_function_pointer_v<F>)
    return reinterpret_cast<std::uintptr_t>(fn);
  else
    return 0;
}

}  // namespace parallelcode::detail
