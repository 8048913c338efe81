#include "units.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace parallelcode::control {

namespace {

// A decimal number at text[at...] ("1", "1.5", ".5"), advancing at past it.
long double number_at(const std::string& text, std::size_t& at) {
  const std::size_t start = at;
  long double n = 0, scale = 1;
  bool digits = false, point = false;
  for (; at < text.size(); ++at) {
    const char c = text[at];
    if (c == '.' && !point) {
      point = true;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      digits = true;
      if (at - start > 18) throw std::invalid_argument("'" + text + "' has too many digits");
      if (point) n += (c - '0') * (scale /= 10);
      else n = n * 10 + (c - '0');
    } else {
      break;
    }
  }
  if (!digits) throw std::invalid_argument("'" + text + "' is not a number");
  return n;
}

}  // namespace

std::chrono::microseconds parse_duration(const std::string& text) {
  static constexpr std::pair<std::string_view, long double> units[] = {
      {"us", 1}, {"ms", 1e3L}, {"s", 1e6L}, {"m", 6e7L}, {"h", 3.6e9L}, {"d", 8.64e10L}};
  const auto bad = [&] {
    return std::invalid_argument("'" + text + "' is not a duration: a number and a unit (us, ms, s, m, h, d), as in 250ms, 1.5s, 1m30s or 2h");
  };
  if (text == "0") return std::chrono::microseconds(0);
  long double us = 0;
  std::size_t at = 0;
  std::size_t last_unit = std::size(units);  // compounds go from larger units to smaller: 1h30m, not 30m1h
  if (text.empty()) throw bad();
  while (at < text.size()) {
    const long double n = number_at(text, at);
    std::size_t end = at;
    while (end < text.size() && std::isalpha(static_cast<unsigned char>(text[end]))) ++end;
    const std::string_view unit = std::string_view(text).substr(at, end - at);
    std::size_t u = 0;
    while (u < std::size(units) && units[u].first != unit) ++u;
    if (u == std::size(units) || u >= last_unit) throw bad();
    last_unit = u;
    us += n * units[u].second;
    at = end;
  }
  if (us > 365.0L * 24 * 3600 * 1e6L) throw std::invalid_argument("'" + text + "' is longer than a year");
  return std::chrono::microseconds(static_cast<long long>(us + 0.5L));
}

std::size_t parse_size(const std::string& text) {
  std::size_t at = 0;
  const long double n = number_at(text, at);
  const std::string unit = text.substr(at);
  static constexpr std::pair<std::string_view, long double> units[] = {
      {"", 1},           {"B", 1},
      {"K", 1024.0L},    {"k", 1024.0L},     {"M", 1048576.0L},   {"G", 1073741824.0L},  {"T", 1099511627776.0L},
      {"KiB", 1024.0L},  {"MiB", 1048576.0L}, {"GiB", 1073741824.0L}, {"TiB", 1099511627776.0L},
      {"kB", 1e3L},      {"KB", 1e3L},        {"MB", 1e6L},          {"GB", 1e9L},          {"TB", 1e12L}};
  const auto* u = std::find_if(std::begin(units), std::end(units), [&](const auto& x) { return x.first == unit; });
  if (u == std::end(units))
    throw std::invalid_argument("'" + text + "' is not a size: bytes, or a number and K, M, G, T (or KiB, MiB, GiB, TiB: powers of 1024) or kB, MB, GB, TB (powers of 1000), as in 512MB, 512MiB or 1.5G");
  const long double bytes = n * u->second;
  if (u->second == 1 && n != std::floor(n)) throw std::invalid_argument("'" + text + "' is not a whole number of bytes");
  if (bytes > static_cast<long double>(std::numeric_limits<std::size_t>::max()))
    throw std::invalid_argument("'" + text + "' is too large");
  return static_cast<std::size_t>(bytes);
}

bool url_has_password(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return false;
  std::string_view authority = url.substr(scheme + 3);
  authority = authority.substr(0, authority.find('/'));
  const auto at = authority.rfind('@');
  return at != std::string_view::npos && authority.substr(0, at).find(':') != std::string_view::npos;
}

std::string read_password_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::invalid_argument("cannot read the password file " + path + ": " + std::strerror(errno));
  std::string password{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
  if (password.empty()) throw std::invalid_argument("the password file " + path + " is empty");
  return password;
}

}  // namespace parallelcode::control
