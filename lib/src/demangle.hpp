#pragma once

#include <string>

namespace parallelcode::detail {

// A C++ type's name as people write it: std::string, not std::__cxx11::basic_string<...>.
std::string demangle(const char* mangled);

}  // namespace parallelcode::detail
