#pragma once

// parallelcode: run C++ functions in a self-healing pool of worker processes.
//
//   parallelcode::pool pool;
//   pool.start({.workers = 4});
//   auto job = pool.job([](const greeting& g) { return "Hello " + g.text + "!"; }, greeting{"world"});
//   std::cout << job.result() << "\n";
//
// Defining named tasks (PARALLELCODE_TASK) takes <parallelcode/task.hpp> as well.

#include <utility>
#include <vector>
#include <sys/types.h>

#include <parallelcode/errors.hpp>
#include <parallelcode/export.hpp>
#include <parallelcode/info.hpp>
#include <parallelcode/job_handle.hpp>
#include <parallelcode/map_handle.hpp>
#include <parallelcode/named_tasks.hpp>
#include <parallelcode/options.hpp>
#include <parallelcode/pool.hpp>
#include <parallelcode/process_names.hpp>
#include <parallelcode/shared_bytes.hpp>
#include <parallelcode/version.hpp>

namespace parallelcode {

// The process-wide pool behind the free functions below.
PARALLELCODE_API pool& default_pool();

inline void start(const options& opts = {}) { default_pool().start(opts); }

template <class F, class T>
auto job(F fn, T&& data, const job_options& opts = {}) {
  return default_pool().job(fn, std::forward<T>(data), opts);
}

inline bool kill(pid_t pid) { return default_pool().kill(pid); }
inline std::vector<worker_info> workers() { return default_pool().workers(); }
inline void free() { default_pool().free(); }
inline bool drain(std::chrono::steady_clock::duration timeout) { return default_pool().drain(timeout); }

}  // namespace parallelcode
