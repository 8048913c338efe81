#include <parallelcode/version.hpp>

namespace parallelcode {

std::string_view version() noexcept { return PARALLELCODE_VERSION_STRING; }

}  // namespace parallelcode
