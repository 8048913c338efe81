#include "units.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>

namespace parallelcode::control {

namespace {

// The number at the front of text, and where its unit starts.
unsigned long long leading_number(const std::string& text, std::size_t& unit) {
  unit = 0;
  while (unit < text.size() && std::isdigit(static_cast<unsigned char>(text[unit]))) ++unit;
  if (unit == 0 || unit > 15) throw std::invalid_argument("'" + text + "' is not a number");
  return std::stoull(text.substr(0, unit));
}

}  // namespace

std::chrono::microseconds parse_duration(const std::string& text) {
  std::size_t at;
  const unsigned long long n = leading_number(text, at);
  const std::string unit = text.substr(at);
  long double us;  // wide enough that no count can overflow before the check below
  if (unit == "us") us = n;
  else if (unit == "ms" || (unit.empty() && n == 0)) us = n * 1e3L;
  else if (unit == "s") us = n * 1e6L;
  else if (unit == "m") us = n * 6e7L;
  else if (unit == "h") us = n * 3.6e9L;
  else throw std::invalid_argument("'" + text + "' is not a duration: give a unit, as in 250ms, 2s, 500us, 1m or 1h");
  if (us > 365.0L * 24 * 3600 * 1e6L) throw std::invalid_argument("'" + text + "' is longer than a year");
  return std::chrono::microseconds(static_cast<long long>(us));
}

std::size_t parse_size(const std::string& text) {
  std::size_t at;
  const unsigned long long n = leading_number(text, at);
  const std::string unit = text.substr(at);
  unsigned shift = 0;
  if (unit == "K" || unit == "k") shift = 10;
  else if (unit == "M") shift = 20;
  else if (unit == "G") shift = 30;
  else if (!unit.empty()) throw std::invalid_argument("'" + text + "' is not a size: bytes, or K, M or G after the number");
  if (n > (std::numeric_limits<std::size_t>::max() >> shift)) throw std::invalid_argument("'" + text + "' is too large");
  return static_cast<std::size_t>(n) << shift;
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
