// How fast a SIGKILLed worker's job fails and its replacement is ready.
//   respawn [kills]     (default: 50)

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <parallelcode/parallelcode.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

int block(int) {
  for (;;) ::pause();
}

double ms_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int kills = argc > 1 ? std::max(1, std::atoi(argv[1])) : 50;
  parallelcode::pool pool;
  pool.start({.workers = 2});
  std::vector<double> failed, ready;
  for (int i = 0; i < kills; ++i) {
    auto job = pool.job(&block, 0);
    const pid_t pid = job.worker().pid;
    const auto t0 = clock_type::now();
    ::kill(pid, SIGKILL);  // from outside the library, as an operator would
    job.wait();
    failed.push_back(ms_since(t0));
    for (;;) {  // until every slot is ready again, none with the dead pid
      const auto ws = pool.workers();
      if (std::all_of(ws.begin(), ws.end(), [&](const auto& w) {
            return w.state == parallelcode::worker_state::ready && w.pid != pid;
          }))
        break;
    }
    ready.push_back(ms_since(t0));
  }
  std::sort(failed.begin(), failed.end());
  std::sort(ready.begin(), ready.end());
  std::printf("SIGKILL -> worker_lost: p50 %.3f ms, max %.3f ms (%d kills)\n", failed[failed.size() / 2],
              failed.back(), kills);
  std::printf("SIGKILL -> replacement ready: p50 %.3f ms, max %.3f ms\n", ready[ready.size() / 2], ready.back());
}
