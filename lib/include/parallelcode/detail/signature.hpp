#pragma once

// The argument and result types of a task's function, for registration by name.

#include <parallelcode/export.hpp>  // first: its C++20 check

#include <type_traits>

namespace parallelcode::detail {

template <class M>
struct call_signature;

template <class R, class A>
struct call_signature<R (*)(A)> {
  using argument = A;
  using result = R;
};
template <class R, class A>
struct call_signature<R (*)(A) noexcept> : call_signature<R (*)(A)> {};
template <class C, class R, class A>
struct call_signature<R (C::*)(A) const> : call_signature<R (*)(A)> {};
template <class C, class R, class A>
struct call_signature<R (C::*)(A) const noexcept> : call_signature<R (*)(A)> {};
template <class C, class R, class A>
struct call_signature<R (C::*)(A)> : call_signature<R (*)(A)> {};

// A function pointer's, or a lambda's (one with a single, non-template call operator).
template <class F>
struct function_signature : call_signature<decltype(&F::operator())> {};
template <class R, class A>
struct function_signature<R (*)(A)> : call_signature<R (*)(A)> {};
template <class R, class A>
struct function_signature<R (*)(A) noexcept> : call_signature<R (*)(A)> {};

template <class F>
using task_argument_t = std::remove_cvref_t<typename function_signature<F>::argument>;

}  // namespace parallelcode::detail
