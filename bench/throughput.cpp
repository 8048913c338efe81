// Tiny-job throughput and one-at-a-time latency through the public API.
//   throughput [jobs] [workers]     (defaults: 200000, 2)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <parallelcode/parallelcode.hpp>

namespace {

struct greeting {
  std::string text;
  template <class A>
  void serialize(A& a) {
    a(text);
  }
};

std::string hello(const greeting& g) { return "Hello " + g.text + "!"; }

using clock_type = std::chrono::steady_clock;

}  // namespace

int main(int argc, char** argv) {
  const int jobs = argc > 1 ? std::atoi(argv[1]) : 200000;
  const unsigned workers = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 2;
  parallelcode::pool pool;
  pool.start({.workers = workers});

  auto burst = [&](int n) {
    std::vector<parallelcode::job_handle<std::string>> handles;
    handles.reserve(static_cast<std::size_t>(n));
    const auto t0 = clock_type::now();
    for (int i = 0; i < n; ++i) handles.push_back(pool.job(&hello, greeting{"world"}));
    for (auto& h : handles)
      if (h.result() != "Hello world!") std::exit(1);
    return std::chrono::duration<double>(clock_type::now() - t0).count();
  };
  burst(jobs / 10);  // warm-up
  const double seconds = burst(jobs);
  std::printf("throughput: %d jobs on %u workers in %.3f s: %.0f jobs/s\n", jobs, workers, seconds, jobs / seconds);

  const int rounds = std::max(1, jobs / 10);
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds; ++i) {
    const auto t0 = clock_type::now();
    if (pool.job(&hello, greeting{"world"}).result() != "Hello world!") return 1;
    us.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  auto rank = [&](double p) { return us[static_cast<std::size_t>(p * (us.size() - 1))]; };
  std::printf("latency: %d sequential jobs: p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us\n", rounds, rank(0.5),
              rank(0.9), rank(0.99), us.back());
}
