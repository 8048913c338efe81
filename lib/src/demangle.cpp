#include "demangle.hpp"

#include <cstdlib>
#include <cxxabi.h>
#include <memory>
#include <utility>

namespace parallelcode::detail {

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> s(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  std::string name = status == 0 && s ? std::string(s.get()) : std::string(mangled);
  for (const auto& [long_form, short_form] :
       {std::pair<std::string, std::string>{"std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >",
                                            "std::string"},
        {"(anonymous namespace)::", ""}}) {
    for (std::size_t at; (at = name.find(long_form)) != std::string::npos;) name.replace(at, long_form.size(), short_form);
  }
  return name;
}

}  // namespace parallelcode::detail
