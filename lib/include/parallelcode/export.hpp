#pragma once

// Every public header includes this one before any code of its own, so a consumer built
// without C++20 (GCC < 11 and clang say 2017xx for -std=c++2a: hence <= 201703L) stops here.
#if __cplusplus <= 201703L
#error "parallelcode needs C++20: compile with -std=c++20 (or later)"
// A missing header is a fatal error: compilation ends here, before C++17's wall of errors.
#include <parallelcode/needs-cxx20>
#endif

// The library is built with hidden symbol visibility: what is marked
// PARALLELCODE_API (the public API, and the few detail functions the headers'
// templates call) is all it exports.
#if defined(__GNUC__) || defined(__clang__)
#define PARALLELCODE_API __attribute__((visibility("default")))
#else
#define PARALLELCODE_API
#endif
