#include "units.hpp"

#include <cctype>
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
  if (unit == "us") return std::chrono::microseconds(n);
  if (unit == "ms" || (unit.empty() && n == 0)) return std::chrono::milliseconds(n);
  if (unit == "s") return std::chrono::seconds(n);
  if (unit == "m") return std::chrono::minutes(n);
  throw std::invalid_argument("'" + text + "' is not a duration: give a unit, as in 250ms, 2s, 500us or 1m");
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

}  // namespace parallelcode::control
