#pragma once

// The library is built with hidden symbol visibility: what is marked
// PARALLELCODE_API (the public API, and the few detail functions the headers'
// templates call) is all it exports.
#if defined(__GNUC__) || defined(__clang__)
#define PARALLELCODE_API __attribute__((visibility("default")))
#else
#define PARALLELCODE_API
#endif
