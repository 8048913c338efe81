// Job data and results through the codec, as a worker decodes a job's data
// (invoke<F, D>) and the supervisor a result (job_state<R>::store_result): corrupt
// bytes must give codec_error, never a crash, UB or an allocation the bytes do not
// pay for; and what decodes must encode back to bytes that decode the same.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <forward_list>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <parallelcode/detail/codec.hpp>
#include <parallelcode/detail/invoke.hpp>
#include <parallelcode/task.hpp>

namespace pd = parallelcode::detail;

namespace {

enum class colour { red, green, blue };
enum class level : std::uint8_t { low, high };

// What user jobs look like: named fields of strings, numbers, flags and containers.
struct record {
  std::string name;
  std::vector<std::string> tags;
  std::vector<double> values;
  std::map<std::string, std::int64_t> counts;
  std::optional<std::string> note;
  std::variant<std::monostate, std::int32_t, std::string> extra;
  std::int64_t id = 0;
  bool active = false;
  colour hue = colour::red;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(name), CEREAL_NVP(tags), CEREAL_NVP(values), CEREAL_NVP(counts), CEREAL_NVP(note),
      CEREAL_NVP(extra), CEREAL_NVP(id), CEREAL_NVP(active), CEREAL_NVP(hue));
  }
};

struct nothing {
  template <class A>
  void serialize(A&) {}
};

struct point {
  float x = 0, y = 0;
  template <class A>
  void serialize(A& a) {
    a(x, y);
  }
};

// Decodes T from the bytes, then checks encode(decode(b)) decodes and re-encodes to the same bytes.
template <class T>
void round_trip(const std::byte* bytes, std::size_t n) {
  T value;
  try {
    value = pd::decode<T>(bytes, n);
  } catch (const pd::codec_error&) {
    return;
  }
  pd::byte_buffer once, twice;
  pd::encode(once, value);
  const T again = pd::decode<T>(once.data(), once.size());  // a codec_error here escapes: a bug
  pd::encode(twice, again);
  if (once.size() != twice.size() || (once.size() && std::memcmp(once.data(), twice.data(), once.size()) != 0))
    std::abort();
}

// Job bytes the way a worker reads a big frame in place in its ring: in pieces, here of 1 to 13 bytes.
class pieces final : public pd::byte_source {
 public:
  pieces(const std::byte* bytes, std::size_t n) : at_(bytes), end_(bytes + n) {}
  std::pair<const std::byte*, std::size_t> next(std::size_t most) override {
    const std::size_t k = std::min({most, count_++ % 13 + 1, static_cast<std::size_t>(end_ - at_)});
    if (k == 0) std::abort();  // the archive asked past the bytes it was told of
    const std::byte* at = at_;
    at_ += k;
    return {at, k};
  }
  void done() override {}

 private:
  const std::byte* at_;
  const std::byte* end_;
  std::size_t count_ = 0;
};

// A job the way a worker runs it: the frame's invoke trampoline decodes, calls, encodes,
// from one block or streamed in pieces; both must agree.
template <class D>
void as_job(const std::byte* bytes, std::size_t n) {
  auto identity = [](const D& d) { return d; };
  pd::byte_buffer whole, streamed;
  bool whole_ok = true, streamed_ok = true;
  try {
    pd::input_archive ar(bytes, n);
    pd::invoke<decltype(identity), D>(0, ar, whole);
  } catch (const pd::codec_error&) {
    whole_ok = false;
  }
  try {
    pieces source(bytes, n);
    pd::input_archive ar(source, n);
    pd::invoke<decltype(identity), D>(0, ar, streamed);
  } catch (const pd::codec_error&) {
    streamed_ok = false;
  }
  if (whole_ok != streamed_ok) std::abort();
  if (!whole_ok) return;
  if (whole.size() != streamed.size() || (whole.size() && std::memcmp(whole.data(), streamed.data(), whole.size()) != 0))
    std::abort();
  (void)pd::decode<D>(whole.data(), whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  // Byte 0 picks the type; the rest is the payload.
  const auto* bytes = reinterpret_cast<const std::byte*>(data + 1);
  const std::size_t n = size - 1;
  switch (data[0] % 24) {
    case 0: round_trip<std::string>(bytes, n); break;
    case 1: round_trip<std::vector<std::int32_t>>(bytes, n); break;
    case 2: round_trip<record>(bytes, n); break;
    case 3: as_job<record>(bytes, n); break;
    case 4: round_trip<std::map<std::string, std::int64_t>>(bytes, n); break;
    case 5: round_trip<std::optional<std::string>>(bytes, n); break;
    case 6: round_trip<std::variant<std::int32_t, std::string, std::vector<std::int32_t>>>(bytes, n); break;
    case 7: round_trip<std::pair<std::string, std::string>>(bytes, n); break;  // a failed job's report
    case 8: round_trip<std::vector<std::vector<std::int32_t>>>(bytes, n); break;
    case 9: as_job<std::unordered_map<std::string, std::vector<std::int32_t>>>(bytes, n); break;
    case 10: round_trip<std::set<std::int32_t>>(bytes, n); break;
    case 11: round_trip<std::list<std::string>>(bytes, n); break;
    case 12: round_trip<std::deque<double>>(bytes, n); break;
    case 13: round_trip<std::forward_list<std::string>>(bytes, n); break;
    case 14: round_trip<std::tuple<std::int32_t, std::string, std::optional<double>>>(bytes, n); break;
    case 15: round_trip<std::vector<bool>>(bytes, n); break;
    case 16: round_trip<std::array<std::uint8_t, 16>>(bytes, n); break;
    case 17: round_trip<std::chrono::milliseconds>(bytes, n); break;
    case 18: round_trip<parallelcode::json_call>(bytes, n); break;  // what the daemon sends a worker
    case 19: round_trip<std::vector<nothing>>(bytes, n); break;
    case 20: round_trip<std::vector<std::optional<record>>>(bytes, n); break;
    case 21: round_trip<std::map<std::int32_t, std::map<std::string, std::string>>>(bytes, n); break;
    case 22: as_job<std::unordered_set<std::string>>(bytes, n); break;
    case 23: round_trip<std::vector<std::pair<point, level>>>(bytes, n); break;
  }
  return 0;
}
