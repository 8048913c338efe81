// A job's start, done and error events: each fires once, in order, even when
// attached after it happened.

#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
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

TEST_CASE("the last on_done callback of a job may move its result out, and the pool goes on") {
  pc::pool pool;
  pool.start({.workers = 1});
  std::promise<std::string> taken;
  std::atomic<bool> on_pool_thread{false};
  const auto me = std::this_thread::get_id();
  auto j = pool.job([](int n) { return std::string(static_cast<std::size_t>(test::spin_ms(n)), 'v'); }, 100);
  j.on_done([&](const std::string&, const pc::job_context&) {
    on_pool_thread = std::this_thread::get_id() != me;
    taken.set_value(std::move(j).result());
  });
  auto f = taken.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  CHECK(on_pool_thread.load());
  CHECK(f.get() == std::string(100, 'v'));
  auto next = pool.job([](int x) { return x + 1; }, 1);
  REQUIRE(next.wait_for(5s));
  CHECK(next.result() == 2);
}

TEST_CASE("moving the result out in an on_done while another on_done has yet to read it throws logic_error at once") {
  pc::pool pool;
  pool.start({.workers = 1});
  std::promise<bool> refused;
  std::promise<std::string> second_saw;
  auto j = pool.job([](int n) { return std::string(static_cast<std::size_t>(test::spin_ms(n)), 'v'); }, 100);
  j.on_done([&](const std::string&, const pc::job_context&) {
    try {
      (void)std::move(j).result();
      refused.set_value(false);
    } catch (const std::logic_error&) {
      refused.set_value(true);
    }
  });
  j.on_done([&](const std::string& r, const pc::job_context&) { second_saw.set_value(r); });
  auto f = refused.get_future();
  auto g = second_saw.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  REQUIRE(g.wait_for(5s) == std::future_status::ready);
  CHECK(f.get());
  CHECK(g.get() == std::string(100, 'v'));
  CHECK(j.result() == std::string(100, 'v'));
}

TEST_CASE("a wait on the pool's thread for a job of its pool not yet ended throws resource_deadlock_would_occur at once") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto is_deadlock = [](const std::system_error& e) { return e.code() == std::errc::resource_deadlock_would_occur; };
  auto quick = pool.job(&test::spin_ms, 50);
  auto running = pool.job(&test::blocks_forever, 0);  // holds the only worker: `queued` never reaches it
  auto queued = pool.job(&test::spin_ms, 1);
  struct seen {
    bool result = false, moved = false, wait = false, worker = false, wait_for_at_once = false, own_start = false;
  };
  std::promise<seen> p;
  quick.on_done([&](const int&, const pc::job_context&) {
    seen s;
    try {
      (void)running.result();
    } catch (const std::system_error& e) {
      s.result = is_deadlock(e);
    }
    try {
      (void)std::move(running).result();
    } catch (const std::system_error& e) {
      s.moved = is_deadlock(e);
    }
    try {
      running.wait();
    } catch (const std::system_error& e) {
      s.wait = is_deadlock(e);
    }
    try {
      (void)queued.worker();
    } catch (const std::system_error& e) {
      s.worker = is_deadlock(e);
    }
    const auto before = std::chrono::steady_clock::now();
    s.wait_for_at_once = !running.wait_for(10s) && std::chrono::steady_clock::now() - before < 5s;
    p.set_value(s);
  });
  auto f = p.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  const seen s = f.get();
  CHECK(s.result);
  CHECK(s.moved);
  CHECK(s.wait);
  CHECK(s.worker);
  CHECK(s.wait_for_at_once);
  // The pool's thread is not stuck: the running job is killed, the queued one runs.
  REQUIRE(pool.kill(running.worker().pid));
  REQUIRE(queued.wait_for(5s));
  CHECK(queued.result() == 1);
}

TEST_CASE("a job's own on_start on the pool's thread cannot wait for its end: it throws at once") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto first = pool.job(&test::spin_ms, 100);  // the second starts from the pool's thread, when this one ends
  auto second = pool.job(&test::spin_ms, 50);
  std::promise<int> p;  // 1: refused, 2: waited on another thread, 0: other
  const auto me = std::this_thread::get_id();
  second.on_start([&](const pc::worker_info&) {
    try {
      (void)second.result();
      p.set_value(std::this_thread::get_id() != me ? 0 : 2);
    } catch (const std::system_error& e) {
      p.set_value(e.code() == std::errc::resource_deadlock_would_occur ? 1 : 0);
    }
  });
  auto f = p.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  CHECK(f.get() == 1);
  CHECK(second.result() == 50);
}

TEST_CASE("a callback may move out the result of a job that ended in the same batch: that job's callbacks run first") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto running = pool.job(&test::blocks_forever, 0);
  running.worker();
  auto queued = pool.job(&test::spin_ms, 1);
  // free() cancels both in one batch on the pool's thread, the running job first.
  std::atomic<int> queued_errors{0};
  std::atomic<int> queued_errors_seen_first{-1};
  std::atomic<bool> took{false};
  queued.on_error([&](const pc::job_error&, const pc::job_context&) { ++queued_errors; });
  running.on_error([&](const pc::job_error&, const pc::job_context&) {
    try {
      (void)std::move(queued).result();
    } catch (const pc::job_cancelled&) {
      took = true;
    }
    queued_errors_seen_first = queued_errors.load();
  });
  auto freed = std::async(std::launch::async, [&] { pool.free(); });
  REQUIRE(freed.wait_for(10s) == std::future_status::ready);
  CHECK(took.load());
  CHECK(queued_errors_seen_first.load() == 1);
  CHECK(queued_errors.load() == 1);
}

TEST_CASE("inside a job's own on_done and on_error, result(), worker(), wait() and wait_for() answer at once") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto ok = pool.job(&test::spin_ms, 100);
  auto bad = pool.job([](int) -> int { throw std::runtime_error("no"); }, 0);
  std::promise<bool> ok_seen, bad_seen;
  ok.on_done([&](const int& r, const pc::job_context& c) {
    ok.wait();
    ok_seen.set_value(r == 100 && ok.result() == 100 && ok.worker().pid == c.worker.pid && ok.wait_for(0s) &&
                      std::move(ok).result() == 100);
  });
  bad.on_error([&](const pc::job_error&, const pc::job_context& c) {
    bad.wait();
    bool threw = false;
    try {
      (void)std::move(bad).result();
    } catch (const pc::job_failed&) {
      threw = true;
    }
    bad_seen.set_value(threw && bad.worker().pid == c.worker.pid && bad.wait_for(1h));
  });
  auto f = ok_seen.get_future();
  auto g = bad_seen.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  REQUIRE(g.wait_for(5s) == std::future_status::ready);
  CHECK(f.get());
  CHECK(g.get());
}
