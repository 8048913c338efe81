// A job's start, done and error events: each fires once, in order, even when
// attached after it happened.

#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

TEST_CASE("on_start and on_done fire once each, start first, with the job's context") {
  pc::pool pool;
  pool.start({.workers = 1});
  std::mutex m;
  std::vector<std::string> seen;
  pc::worker_info started;
  pc::job_context ctx;
  std::atomic<int> done_calls{0};
  auto j = pool.job([](int x) { return x * 10; }, 4);
  j.on_start([&](const pc::worker_info& w) {
     std::lock_guard lock(m);
     seen.push_back("start");
     started = w;
   })
      .on_done([&](const int& r, const pc::job_context& c) {
        std::lock_guard lock(m);
        seen.push_back("done " + std::to_string(r));
        ctx = c;
        ++done_calls;
      })
      .on_error([&](const pc::job_error&, const pc::job_context&) {
        std::lock_guard lock(m);
        seen.push_back("error");
      });
  CHECK(j.result() == 40);
  REQUIRE(test::eventually([&] { return done_calls.load() == 1; }));
  std::lock_guard lock(m);
  CHECK(seen == std::vector<std::string>{"start", "done 40"});
  CHECK(started.pid == j.worker().pid);
  CHECK(ctx.id == j.id());
  CHECK(ctx.worker.pid == started.pid);
  CHECK(ctx.queued >= 0ns);
  CHECK(ctx.running > 0ns);
}

TEST_CASE("callbacks attached after the job ended still fire, exactly once, at once") {
  pc::pool pool;
  pool.start({.workers = 1});
  // wait() returns once the job ended; its callbacks are published a moment later, on the
  // pool's thread. Wait for that with a callback of its own: one attached in a polling loop
  // would run there later, on the loop's dead stack, racing with the loop.
  auto ok = pool.job([](int x) { return x + 1; }, 1);
  ok.wait();
  std::atomic<bool> ok_published{false};
  ok.on_done([&](const int&, const pc::job_context&) { ok_published = true; });
  REQUIRE(test::eventually([&] { return ok_published.load(); }));
  int starts = 0, dones = 0, errors = 0;
  ok.on_start([&](const pc::worker_info&) { ++starts; });
  ok.on_done([&](const int& r, const pc::job_context&) { dones += r; });
  ok.on_error([&](const pc::job_error&, const pc::job_context&) { ++errors; });
  CHECK(starts == 1);
  CHECK(dones == 2);
  CHECK(errors == 0);

  auto bad = pool.job([](int) -> int { throw std::runtime_error("no"); }, 0);
  bad.wait();
  std::atomic<bool> bad_published{false};
  bad.on_error([&](const pc::job_error&, const pc::job_context&) { bad_published = true; });
  REQUIRE(test::eventually([&] { return bad_published.load(); }));
  std::string what;
  bad.on_error([&](const pc::job_error& e, const pc::job_context&) { what = e.what(); });
  int bad_dones = 0;
  bad.on_done([&](const int&, const pc::job_context&) { ++bad_dones; });
  CHECK(what.find("no") != std::string::npos);
  CHECK(bad_dones == 0);
}

TEST_CASE("on_error receives worker_lost when the worker is killed, and on_done never fires") {
  pc::pool pool;
  pool.start({.workers = 1});
  std::atomic<int> errors{0}, dones{0};
  std::atomic<int> signal{0};
  auto j = pool.job([](int) { ::pause(); return 0; }, 0);
  j.on_done([&](const int&, const pc::job_context&) { ++dones; })
      .on_error([&](const pc::job_error& e, const pc::job_context& c) {
        if (auto* lost = dynamic_cast<const pc::worker_lost*>(&e)) signal = lost->signal();
        CHECK(c.worker.pid > 0);
        ++errors;
      });
  REQUIRE(pool.kill(j.worker().pid));
  REQUIRE(j.wait_for(5s));
  REQUIRE(test::eventually([&] { return errors.load() == 1; }));
  CHECK(signal == SIGKILL);
  CHECK(dones == 0);
}

TEST_CASE("a job that never reached a worker fires on_error but never on_start") {
  pc::pool pool;  // not started
  int starts = 0, errors = 0;
  auto j = pool.job([](int x) { return x; }, 1);
  j.on_start([&](const pc::worker_info&) { ++starts; });
  j.on_error([&](const pc::job_error& e, const pc::job_context&) {
    CHECK(dynamic_cast<const pc::job_cancelled*>(&e) != nullptr);
    ++errors;
  });
  CHECK(starts == 0);
  CHECK(errors == 1);
}

TEST_CASE("a callback may submit another job to the pool") {
  pc::pool pool;
  pool.start({.workers = 2});
  std::promise<int> second;
  auto first = pool.job([](int x) { return x + 1; }, 1);
  first.on_done([&](const int& r, const pc::job_context&) {
    pool.job([](int x) { return x * 100; }, r).on_done([&](const int& r2, const pc::job_context&) {
      second.set_value(r2);
    });
  });
  auto f = second.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  CHECK(f.get() == 200);
}

TEST_CASE("free() from a callback on the pool's thread is refused, not a deadlock") {
  pc::pool pool;
  pool.start({.workers = 1});
  std::promise<bool> refused;
  auto j = pool.job([](int) {
    for (auto until = std::chrono::steady_clock::now() + 50ms; std::chrono::steady_clock::now() < until;) {
    }
    return 0;
  }, 0);
  j.on_done([&](const int&, const pc::job_context&) {
    try {
      pool.free();
      refused.set_value(false);
    } catch (const std::system_error&) {
      refused.set_value(true);
    }
  });
  auto f = refused.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  // The callback ran either on the pool's thread (refused) or, if it was attached
  // after the end, on ours (where free() is fine).
  if (f.get()) CHECK(pool.workers().size() == 1);
}

TEST_CASE("moving the result out waits for the on_done callbacks that read it") {
  pc::pool pool;
  pool.start({.workers = 1});
  std::atomic<bool> finished{false};
  std::atomic<std::size_t> seen{0};
  auto j = pool.job([](int n) {
    for (auto until = std::chrono::steady_clock::now() + 20ms; std::chrono::steady_clock::now() < until;) {
    }
    return std::string(static_cast<std::size_t>(n), 'v');
  }, 100000);
  j.on_done([&](const std::string& r, const pc::job_context&) {
    for (auto until = std::chrono::steady_clock::now() + 30ms; std::chrono::steady_clock::now() < until;) {
    }
    seen = r.size();
    finished = true;
  });
  const std::string mine = std::move(j).result();
  CHECK(mine.size() == 100000);
  CHECK(finished.load());
  CHECK(seen.load() == 100000);
}
