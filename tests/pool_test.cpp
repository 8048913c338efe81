// The embedded pool: start, job, results, rotation, concurrency, ticks, free.

#include <doctest/doctest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

namespace {

struct greeting {
  std::string text;
  template <class A>
  void serialize(A& a) {
    a(text);
  }
};

int twice(int x) { return 2 * x; }
int triple(int x) { return 3 * x; }

// Jobs of this process running now / started so far; each worker has its own copy.
std::atomic<int> running_here{0};
std::atomic<int> arrived_here{0};

}  // namespace

TEST_CASE("the README example prints Hello world!") {
  const char* hello = std::getenv("PARALLELCODE_HELLO");
  REQUIRE_MESSAGE(hello, "meson sets PARALLELCODE_HELLO to the example's path");
  FILE* out = ::popen(hello, "r");
  REQUIRE(out);
  char line[128] = {};
  REQUIRE(std::fgets(line, sizeof line, out));
  CHECK(std::string(line) == "Hello world!\n");
  CHECK(::pclose(out) == 0);
}

TEST_CASE("start returns with every worker ready, each in a process of its own") {
  pc::pool pool;
  pool.start({.workers = 3});
  const auto ws = pool.workers();
  REQUIRE(ws.size() == 3);
  std::set<pid_t> seen;
  for (const auto& w : ws) {
    CHECK(w.state == pc::worker_state::ready);
    CHECK(w.pid > 0);
    CHECK(w.pid != ::getpid());
    CHECK(test::process_alive(w.pid));
    seen.insert(w.pid);
  }
  CHECK(seen.size() == 3);
  CHECK(pool.stats().fork_server > 0);
}

TEST_CASE("bad options throw invalid_argument and start nothing") {
  pc::pool pool;
  CHECK_THROWS_AS(pool.start({.workers = 0}), std::invalid_argument);
  CHECK_THROWS_AS(pool.start({.workers = 1, .concurrency = 0}), std::invalid_argument);
  CHECK_THROWS_AS(pool.start({.workers = 1, .tick = -1us}), std::invalid_argument);
  CHECK_THROWS_AS(pool.start({.workers = 1, .ring_bytes = 100}), std::invalid_argument);
  CHECK_THROWS_AS(pool.start({.workers = 1, .max_payload = 0}), std::invalid_argument);
  CHECK(pool.workers().empty());
  CHECK(test::children().empty());
}

TEST_CASE("starting a started pool throws system_error") {
  pc::pool pool;
  pool.start({.workers = 1});
  CHECK_THROWS_AS(pool.start({.workers = 1}), std::system_error);
  CHECK(pool.workers().size() == 1);
}

TEST_CASE("a job returns what its function returns: lambdas, function pointers, void, containers") {
  pc::pool pool;
  pool.start({.workers = 2});

  auto hello = pool.job([](const greeting& g) { return "Hello " + g.text + "!"; }, greeting{"world"});
  CHECK(hello.result() == "Hello world!");

  auto a = pool.job(&twice, 21);
  auto b = pool.job(triple, 5);
  CHECK(a.result() == 42);
  CHECK(b.result() == 15);

  auto v = pool.job([](std::vector<int> xs) { std::reverse(xs.begin(), xs.end()); return xs; },
                    std::vector<int>{1, 2, 3});
  CHECK(v.result() == std::vector<int>{3, 2, 1});

  auto m = pool.job([](const std::map<std::string, int>& in) { return in.at("b"); },
                    std::map<std::string, int>{{"a", 1}, {"b", 2}});
  CHECK(m.result() == 2);

  auto nothing = pool.job([](int) {}, 0);
  nothing.result();
  CHECK(nothing.wait_for(0s));

  // The job runs in another process: it sees its own pid.
  auto pid = pool.job([](int) { return ::getpid(); }, 0);
  const pid_t got = pid.result();
  CHECK(got != ::getpid());
  CHECK(got == pid.worker().pid);

  // A moved-out result leaves the handle.
  auto big = pool.job([](int n) { return std::string(static_cast<std::size_t>(n), 'x'); }, 1000);
  CHECK(std::move(big).result().size() == 1000);
}

TEST_CASE("jobs run one at a time land on workers 0,1,2,0,1,2 and workers() shows the order") {
  pc::pool pool;
  pool.start({.workers = 3});
  std::vector<int> front_ids;
  for (const auto& w : pool.workers()) front_ids.push_back(w.id);
  CHECK(front_ids == std::vector<int>{0, 1, 2});

  std::vector<int> ids;
  for (int i = 0; i < 6; ++i) {
    auto j = pool.job([](int) { return ::getpid(); }, 0);
    const pid_t pid = j.result();
    CHECK(j.worker().pid == pid);
    ids.push_back(j.worker().id);
    // The worker that ran it went to the back.
    CHECK(pool.workers().back().id == j.worker().id);
  }
  CHECK(ids == std::vector<int>{0, 1, 2, 0, 1, 2});
}

TEST_CASE("a worker with concurrency 3 runs 3 jobs at the same time") {
  pc::pool pool;
  pool.start({.workers = 1, .concurrency = 3});
  // A barrier: no job leaves before all 3 have arrived, so reaching 3 proves they overlap.
  auto overlap = [](int) {
    ++arrived_here;
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (arrived_here.load() < 3 && std::chrono::steady_clock::now() < until) {
    }
    return arrived_here.load();
  };
  std::vector<pc::job_handle<int>> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(pool.job(overlap, i));
  for (auto& j : jobs) {
    REQUIRE(j.wait_for(15s));
    CHECK(j.result() == 3);
  }
  for (auto& j : jobs) CHECK(j.worker().pid == jobs[0].worker().pid);
}

TEST_CASE("a worker never runs more jobs at once than its concurrency") {
  pc::pool pool;
  pool.start({.workers = 2, .concurrency = 2});
  std::vector<pc::job_handle<int>> jobs;
  for (int i = 0; i < 200; ++i)
    jobs.push_back(pool.job([](int) {
      const int now = ++running_here;
      for (auto until = std::chrono::steady_clock::now() + 50us; std::chrono::steady_clock::now() < until;) {
      }
      --running_here;
      return now;
    }, i));
  for (auto& j : jobs) {
    REQUIRE(j.wait_for(10s));
    CHECK(j.result() <= 2);
  }
  for (const auto& w : pool.workers()) CHECK(w.running == 0);
}

TEST_CASE("with a 10 ms tick a burst of 1,000 jobs goes out in a handful of batches") {
  pc::pool pool;
  pool.start({.workers = 2, .concurrency = 128, .tick = 10ms});
  std::vector<pc::job_handle<int>> jobs;
  for (int i = 0; i < 1000; ++i) jobs.push_back(pool.job([](int x) { return x + 1; }, i));
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(jobs[i].wait_for(10s));
    CHECK(jobs[i].result() == i + 1);
  }
  const auto s = pool.stats();
  MESSAGE("batches: " << s.dispatch_batches);
  CHECK(s.dispatch_batches >= 1);
  CHECK(s.dispatch_batches <= 12);
}

TEST_CASE("without a tick every job is dispatched as soon as it is submitted") {
  pc::pool pool;
  pool.start({.workers = 1});
  for (int i = 0; i < 5; ++i) CHECK(pool.job([](int x) { return x; }, i).result() == i);
  CHECK(pool.stats().dispatch_batches == 5);
}

TEST_CASE("a job that throws fails with job_failed, carrying the type and message, and the worker lives on") {
  pc::pool pool;
  pool.start({.workers = 1});
  const pid_t before = pool.workers()[0].pid;
  auto j = pool.job([](int) -> int { throw std::out_of_range("boom"); }, 0);
  try {
    j.result();
    FAIL("result() should have thrown");
  } catch (const pc::job_failed& e) {
    CHECK(e.type() == "std::out_of_range");
    CHECK(e.message() == "boom");
    CHECK(std::string(e.what()).find("boom") != std::string::npos);
  }
  struct custom {};
  auto k = pool.job([](int) -> int { throw custom{}; }, 0);
  CHECK_THROWS_AS(k.result(), pc::job_failed);
  CHECK(pool.job([](int x) { return x; }, 7).result() == 7);
  CHECK(pool.workers()[0].pid == before);
  CHECK(pool.workers()[0].respawns == 0);
}

TEST_CASE("10,000 tiny jobs all complete with the right results") {
  pc::pool pool;
  pool.start({.workers = 2});
  std::vector<pc::job_handle<int>> jobs;
  jobs.reserve(10000);
  for (int i = 0; i < 10000; ++i) jobs.push_back(pool.job([](int x) { return x * 3; }, i));
  long long sum = 0;
  for (auto& j : jobs) {
    REQUIRE(j.wait_for(30s));
    sum += j.result();
  }
  CHECK(sum == 3LL * 9999 * 10000 / 2);
  const auto s = pool.stats();
  CHECK(s.submitted == 10000);
  CHECK(s.queued == 0);
  std::uint64_t done = 0;
  for (const auto& w : pool.workers()) done += w.done;
  CHECK(done == 10000);
}

TEST_CASE("jobs submitted from 8 threads at once all complete") {
  pc::pool pool;
  pool.start({.workers = 2, .concurrency = 2});
  std::atomic<long long> sum{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      std::vector<pc::job_handle<long long>> jobs;
      for (int i = 0; i < 500; ++i) jobs.push_back(pool.job([](long long x) { return x * x; }, t * 1000LL + i));
      for (auto& j : jobs) {
        if (!j.wait_for(30s)) ++failures;
        else sum += j.result();
      }
    });
  for (auto& t : threads) t.join();
  long long expect = 0;
  for (int t = 0; t < 8; ++t)
    for (int i = 0; i < 500; ++i) expect += (t * 1000LL + i) * (t * 1000LL + i);
  CHECK(failures == 0);
  CHECK(sum == expect);
}

TEST_CASE("jobs one thread submits while the pool is busy run in the order it submitted them") {
  pc::pool pool;
  pool.start({.workers = 1});  // one worker runs every job, in queue order
  std::atomic<int> out_of_order{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      std::vector<pc::job_handle<int>> jobs;
      for (int i = 0; i < 20'000; ++i) jobs.push_back(pool.job([](int) { static int ran = 0; return ++ran; }, i));
      int last = 0;
      for (auto& j : jobs) {
        if (!j.wait_for(30s)) {
          ++failed;
          continue;
        }
        const int at = j.result();  // its place in the worker's run order
        out_of_order += at <= last;
        last = at;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(failed == 0);
  CHECK(out_of_order == 0);
  CHECK(pool.stats().completed == 80'000);
}

TEST_CASE("free() while threads submit: every job ends, with its result or job_cancelled, and none is left hanging") {
  for (int round = 0; round < 5; ++round) {
    pc::pool pool;
    pool.start({.workers = 2});
    std::atomic<bool> go{true};
    std::atomic<int> hung{0}, wrong{0}, ended{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t)
      threads.emplace_back([&] {
        std::vector<pc::job_handle<int>> jobs;
        for (int i = 0; go || i < 1000; ++i) jobs.push_back(pool.job(&twice, i));
        for (std::size_t i = 0; i < jobs.size(); ++i) {
          if (!jobs[i].wait_for(30s)) {
            ++hung;
            continue;
          }
          try {
            wrong += jobs[i].result() != 2 * static_cast<int>(i);
          } catch (const pc::job_cancelled&) {
          }
          ++ended;
        }
      });
    while (pool.stats().submitted < 5000) std::this_thread::yield();
    pool.free();
    go = false;
    for (auto& t : threads) t.join();
    CHECK(hung == 0);
    CHECK(wrong == 0);
    CHECK(ended >= 3000);
  }
}

TEST_CASE("payloads much larger than the ring stream through both ways") {
  pc::pool pool;
  pool.start({.workers = 1, .ring_bytes = 4096});
  std::vector<unsigned char> data(3 << 20);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 31 + 7);
  auto j = pool.job([](std::vector<unsigned char> v) {
    for (auto& b : v) b = static_cast<unsigned char>(b + 1);
    return v;
  }, data);
  REQUIRE(j.wait_for(30s));
  const auto& back = j.result();
  REQUIRE(back.size() == data.size());
  bool same = true;
  for (std::size_t i = 0; i < data.size(); ++i) same &= back[i] == static_cast<unsigned char>(data[i] + 1);
  CHECK(same);
  // Small jobs still go through the same worker afterwards.
  CHECK(pool.job([](int x) { return x; }, 5).result() == 5);
}

TEST_CASE("data or a result over max_payload fails with payload_error and the pool goes on") {
  pc::pool pool;
  pool.start({.workers = 1, .max_payload = 1024});
  auto in = pool.job([](const std::string& s) { return s.size(); }, std::string(4096, 'a'));
  CHECK_THROWS_AS(in.result(), pc::payload_error);
  auto out = pool.job([](int n) { return std::string(static_cast<std::size_t>(n), 'b'); }, 4096);
  CHECK_THROWS_AS(out.result(), pc::payload_error);
  CHECK(pool.job([](int x) { return x; }, 3).result() == 3);
  CHECK(pool.workers()[0].respawns == 0);
}

TEST_CASE("a job submitted to a pool that is not running fails with job_cancelled") {
  pc::pool pool;
  auto before = pool.job([](int x) { return x; }, 1);
  CHECK_THROWS_AS(before.result(), pc::job_cancelled);
  CHECK_THROWS_AS(before.worker(), pc::job_cancelled);
  pool.start({.workers = 1});
  pool.free();
  auto after = pool.job([](int x) { return x; }, 1);
  CHECK_THROWS_AS(after.result(), pc::job_cancelled);
}

TEST_CASE("free fails queued and running jobs with job_cancelled") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto running = pool.job([](int) { ::pause(); return 0; }, 0);
  auto queued = pool.job([](int x) { return x; }, 1);
  running.worker();
  pool.free();
  REQUIRE(running.wait_for(5s));
  REQUIRE(queued.wait_for(5s));
  CHECK_THROWS_AS(running.result(), pc::job_cancelled);
  CHECK_THROWS_AS(queued.result(), pc::job_cancelled);
}

TEST_CASE("free leaves no child process, no shared mapping and nothing in /dev/shm") {
  const auto shm_before = test::dev_shm();
  const int maps_before = test::shared_anonymous_mappings();
  REQUIRE(test::children().empty());
  std::vector<pid_t> all;
  {
    pc::pool pool;
    pool.start({.workers = 3});
    for (int i = 0; i < 100; ++i) pool.job([](int x) { return x; }, i).result();
    all = test::pids(pool.workers());
    all.push_back(pool.stats().fork_server);
    CHECK(test::shared_anonymous_mappings() > maps_before);
    pool.free();
    CHECK(pool.workers().empty());
  }
  for (pid_t pid : all) CHECK(test::process_gone(pid, 1000ms));
  CHECK(test::children().empty());
  CHECK(test::shared_anonymous_mappings() == maps_before);
  CHECK(test::dev_shm() == shm_before);
}

TEST_CASE("the destructor frees the pool like free()") {
  std::vector<pid_t> all;
  {
    pc::pool pool;
    pool.start({.workers = 2});
    all = test::pids(pool.workers());
  }
  for (pid_t pid : all) CHECK(test::process_gone(pid, 1000ms));
  CHECK(test::children().empty());
}

TEST_CASE("a pool can be started again after free") {
  pc::pool pool;
  pool.start({.workers = 1});
  CHECK(pool.job([](int x) { return x + 1; }, 1).result() == 2);
  pool.free();
  pool.start({.workers = 2});
  CHECK(pool.workers().size() == 2);
  CHECK(pool.job([](int x) { return x + 2; }, 1).result() == 3);
}

TEST_CASE("the free functions drive a process-wide default pool") {
  pc::start({.workers = 2});
  auto j = pc::job([](const greeting& g) { return "Hello " + g.text + "!"; }, greeting{"world"});
  CHECK(j.result() == "Hello world!");
  const auto ws = pc::workers();
  CHECK(ws.size() == 2);
  CHECK_FALSE(pc::kill(::getpid()));
  pc::free();
  CHECK(pc::workers().empty());
}

TEST_CASE("workers() counts each worker's running and finished jobs") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto blocked = pool.job([](int) { ::pause(); return 0; }, 0);
  blocked.worker();
  REQUIRE(test::eventually([&] { return pool.workers()[0].running == 1; }));
  const pid_t pid = pool.workers()[0].pid;
  REQUIRE(pool.kill(pid));
  REQUIRE(blocked.wait_for(5s));
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 1, {pid}); }));
  for (int i = 0; i < 4; ++i) pool.job([](int x) { return x; }, i).result();
  const auto w = pool.workers()[0];
  CHECK(w.running == 0);
  CHECK(w.done == 4);
  CHECK(w.respawns == 1);
}

namespace {

// Decodes its bytes, then refuses to go on: a decode that fails halfway through a
// frame still streaming in.
struct refused_halfway {
  std::vector<std::uint8_t> bytes;
  std::string tail;
  template <class A>
  void save(A& a) const {
    a(bytes, tail);
  }
  template <class A>
  void load(A& a) {
    a(bytes);
    throw std::runtime_error("refused after " + std::to_string(bytes.size()) + " bytes");
  }
};

unsigned long long byte_total(const std::vector<std::uint8_t>& v) { return std::accumulate(v.begin(), v.end(), 0ull); }

// The two ways a worker reads a big job's data in place: streamed through a ring much
// smaller than it, or whole in a ring that holds it (and more).
std::size_t big_job_ring() {
  std::size_t ring = 0;
  SUBCASE("streamed through a 4 KiB ring") { ring = 4096; }
  SUBCASE("whole in an 8 MiB ring") { ring = std::size_t{8} << 20; }
  return ring;
}

}  // namespace

TEST_CASE("a big job whose decode fails halfway fails alone: the worker skips the rest of its frame") {
  const std::size_t ring = big_job_ring();
  CAPTURE(ring);
  pc::pool pool;
  pool.start({.workers = 1, .ring_bytes = ring});
  const pid_t pid = pool.workers()[0].pid;
  auto bad = pool.job([](const refused_halfway& r) { return r.tail.size(); },
                      refused_halfway{std::vector<std::uint8_t>(1 << 20, 7), std::string(1 << 20, 't')});
  REQUIRE(bad.wait_for(30s));
  CHECK_THROWS_WITH_AS(bad.result(), doctest::Contains("refused after 1048576 bytes"), pc::payload_error);
  // The next job's frame starts where the bad one's ended, in the same worker.
  const std::vector<std::uint8_t> data(3 << 20, 5);
  auto good = pool.job(&byte_total, data);
  REQUIRE(good.wait_for(30s));
  CHECK(good.result() == 5ull * data.size());
  CHECK(pool.job([](int x) { return x + 1; }, 41).result() == 42);
  CHECK(pool.workers()[0].pid == pid);
  CHECK(pool.workers()[0].respawns == 0);
}

TEST_CASE("with concurrency 3, big jobs are read one at a time from the ring and each gets its own bytes") {
  const std::size_t ring = big_job_ring();
  CAPTURE(ring);
  pc::pool pool;
  pool.start({.workers = 1, .concurrency = 3, .ring_bytes = ring});
  std::vector<pc::job_handle<unsigned long long>> jobs;
  for (int i = 0; i < 12; ++i)
    jobs.push_back(pool.job(&byte_total, std::vector<std::uint8_t>(100000 + i * 4099, static_cast<std::uint8_t>(i + 1))));
  for (int i = 0; i < 12; ++i) {
    REQUIRE(jobs[i].wait_for(30s));
    CHECK(jobs[i].result() == (i + 1ull) * (100000 + i * 4099));
  }
}

TEST_CASE("jobs larger than the ring, one at a time, never wait for the pool's idle timeout") {
  // A lost wakeup between streaming a frame and sleeping cost a whole idle second.
  pc::pool pool;
  pool.start({.workers = 1, .ring_bytes = 4096});
  const std::string data(20000, 'z');
  for (int i = 0; i < 300; ++i) {
    auto j = pool.job([](const std::string& s) { return s.size(); }, data);
    REQUIRE_MESSAGE(j.wait_for(900ms), "job " << i << " stalled");
    CHECK(j.result() == data.size());
  }
}

TEST_CASE("text data may be a string literal or a char pointer: it travels as std::string") {
  pc::pool pool;
  pool.start({.workers = 1});
  CHECK(pool.job([](const std::string& s) { return s + "!"; }, "hello").result() == "hello!");
  const char* text = "world";
  CHECK(pool.job([](std::string s) { return s.size(); }, text).result() == 5);
}

TEST_CASE("wait_for with an enormous timeout waits instead of overflowing") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto j = pool.job([](int x) { return x; }, 1);
  CHECK(j.wait_for(std::chrono::hours::max()));
  CHECK(j.wait_for(std::chrono::nanoseconds::max()));
  CHECK(j.result() == 1);
}

TEST_CASE("an empty job_handle says so instead of crashing") {
  pc::job_handle<int> empty;
  CHECK_FALSE(empty.valid());
  CHECK_THROWS_AS(empty.result(), std::invalid_argument);
  CHECK_THROWS_AS(empty.worker(), std::invalid_argument);
  CHECK_THROWS_AS(empty.id(), std::invalid_argument);
  CHECK(empty.wait_for(1s));
}

TEST_CASE("stats count the jobs that completed and the jobs that failed") {
  pc::pool pool;
  pool.start({.workers = 2});
  for (int i = 0; i < 10; ++i) pool.job([](int x) { return x; }, i).result();
  auto bad = pool.job([](int) -> int { throw std::runtime_error("x"); }, 0);
  bad.wait();
  const auto s = pool.stats();
  CHECK(s.submitted == 11);
  CHECK(s.completed == 10);
  CHECK(s.failed == 1);
}

TEST_CASE("with a tiny max_payload, errors still arrive as job_failed and payload_error, not as dead workers") {
  pc::pool pool;
  pool.start({.workers = 1, .max_payload = 32});
  auto threw = pool.job([](int) -> int { throw std::runtime_error(std::string(200, 'e')); }, 0);
  try {
    threw.result();
    FAIL("result() should have thrown");
  } catch (const pc::job_failed& e) {
    CHECK(e.message() == std::string(200, 'e'));
  }
  auto huge = pool.job([](int n) { return std::string(static_cast<std::size_t>(n), 'r'); }, 1000);
  CHECK_THROWS_AS(huge.result(), pc::payload_error);
  CHECK(pool.workers()[0].respawns == 0);
}

TEST_CASE("in tick mode, a pool whose workers are all busy sleeps instead of spinning") {
  pc::pool pool;
  pool.start({.workers = 1, .tick = 1ms});
  auto busy = pool.job([](int) { ::pause(); return 0; }, 0);
  busy.worker();
  std::vector<pc::job_handle<int>> queued;
  for (int i = 0; i < 10; ++i) queued.push_back(pool.job([](int x) { return x; }, i));
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(queued[0].wait_for(300ms));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  const double cpu = seconds(after.ru_utime) + seconds(after.ru_stime) - seconds(before.ru_utime) - seconds(before.ru_stime);
  MESSAGE("host cpu " << cpu << " s over " << wall << " s");
  CHECK(cpu < wall / 2);
  REQUIRE(pool.kill(busy.worker().pid));
  for (auto& q : queued) CHECK(q.wait_for(5s));
}

TEST_CASE("free() during start() from another thread leaves the pool stopped and usable") {
  for (int round = 0; round < 20; ++round) {
    pc::pool pool;
    std::thread starter([&] {
      try {
        pool.start({.workers = 3});
      } catch (const std::system_error&) {
      }
    });
    pool.free();
    starter.join();
    pool.free();
    CHECK(pool.job([](int x) { return x; }, 1).wait_for(5s));
    pool.start({.workers = 1});
    CHECK(pool.job([](int x) { return x + 1; }, 1).result() == 2);
  }
  CHECK(test::children().empty());
}

// ThreadSanitizer cannot start a thread in the fork of a multithreaded process ("dup thread with used id", exit 66):
// the second pool's fork server is forked beside the first pool's thread.
TEST_CASE("a pool with bigger rings starts beside a running one with small rings, and both serve" *
          doctest::skip(test::under_tsan)) {
  // The second pool's fork server unmaps the first's region: with the first's size, not its own.
  pc::pool a;
  a.start({.workers = 1, .ring_bytes = 4096});
  pc::pool b;
  b.start({.workers = 1, .ring_bytes = 1 << 20});
  CHECK(b.job([](int x) { return x * 2; }, 21).result() == 42);
  CHECK(a.job([](int x) { return x + 1; }, 41).result() == 42);
}

TEST_CASE("two pools in one process: each fork server and worker holds only its own pool's resources" *
          doctest::skip(test::under_tsan)) {
  pc::pool a;
  a.start({.workers = 1});
  pc::pool b;
  b.start({.workers = 1});
  // b's worker has exactly one shared mapping (b's own), not a's too.
  const pid_t bw = b.workers()[0].pid;
  std::ifstream maps("/proc/" + std::to_string(bw) + "/maps");
  std::string line;
  int shared = 0;
  while (std::getline(maps, line)) shared += line.find("/dev/zero (deleted)") != std::string::npos;
  CHECK(shared == 1);
  // So a's fork server sees its end of file at once, and freeing a does not wait out a grace period.
  const auto t0 = std::chrono::steady_clock::now();
  a.free();
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(b.job([](int x) { return x * 2; }, 21).result() == 42);
}

TEST_CASE("a pool destroyed by its own on_done callback frees itself on its thread: no abort, nothing left") {
  REQUIRE(test::threads_named("pc-supervisor").empty());
  auto owner = std::make_unique<pc::pool>();
  owner->start({.workers = 2});
  std::vector<pid_t> processes = test::pids(owner->workers());
  processes.push_back(owner->stats().fork_server);
  auto last = owner->job(&test::spin_ms, 100);
  auto stuck = owner->job(&test::blocks_forever, 0);  // running when the pool goes: cancelled
  std::promise<bool> destroyed;
  const auto me = std::this_thread::get_id();
  last.on_done([&](const int&, const pc::job_context&) {
    const bool on_pool_thread = std::this_thread::get_id() != me;
    owner.reset();
    destroyed.set_value(on_pool_thread);
  });
  auto f = destroyed.get_future();
  REQUIRE(f.wait_for(5s) == std::future_status::ready);
  CHECK(f.get());
  REQUIRE(stuck.wait_for(5s));
  CHECK_THROWS_AS(stuck.result(), pc::job_cancelled);
  for (pid_t pid : processes) CHECK_MESSAGE(test::process_gone(pid, 5000ms), "pid " << pid << " outlived its pool");
  CHECK(test::eventually([] { return test::threads_named("pc-supervisor").empty(); }));
  CHECK(test::eventually([] { return test::children().empty(); }));
}

TEST_CASE("a child forked by a raw fork system call cannot drive the pool: its jobs are refused, the parent's run") {
  auto pool = std::make_unique<pc::pool>();
  pool->start({.workers = 1});
  REQUIRE(pool->job(&twice, 1).result() == 2);
  const pid_t worker = pool->workers()[0].pid;
  // No pthread_atfork handler runs for it: only the kernel tells the child apart.
  const pid_t child = static_cast<pid_t>(::syscall(SYS_fork));
  REQUIRE(child >= 0);
  if (child == 0) {
    int code = 0;
    auto j = pool->job(&twice, 2);
    if (!j.wait_for(0s)) {
      code = 1;  // accepted: it went into the parent's rings
    } else {
      try {
        (void)j.result();
        code = 2;
      } catch (const pc::job_cancelled&) {
      } catch (...) {
        code = 3;
      }
    }
    if (pool->kill(worker)) code = 4;
    if (!pool->workers().empty()) code = 5;
    pool->free();   // touches nothing of the original's
    pool.reset();   // nor does the destructor
    ::_exit(code);
  }
  const bool exited = test::process_gone(child, 10000ms);
  if (!exited) ::kill(child, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(exited);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(test::process_alive(worker));
  for (int i = 0; i < 20; ++i) {
    auto j = pool->job(&twice, i);
    REQUIRE(j.wait_for(5s));
    CHECK(j.result() == 2 * i);
  }
  CHECK(pool->workers()[0].pid == worker);
}

TEST_CASE("a job submitted while drain() begins is either refused by job() or runs to its end") {
  int late = 0, refused = 0, ran = 0;
  for (int round = 0; round < 20 && late == 0; ++round) {
    pc::pool pool;
    pool.start({.workers = 2});
    std::atomic<int> submitting{0};
    std::atomic<bool> stop{false};
    struct submitted {
      pc::job_handle<int> handle;
      bool ended_at_return;
    };
    std::vector<std::vector<submitted>> by_thread(4);
    std::vector<std::thread> threads;
    for (auto& mine : by_thread)
      threads.emplace_back([&] {
        ++submitting;
        while (!stop) {
          auto j = pool.job(&twice, 1);
          const bool ended = j.wait_for(0s);
          mine.push_back({std::move(j), ended});
          if (ended && mine.back().handle.valid()) {
            try {
              (void)mine.back().handle.result();
            } catch (const pc::job_cancelled&) {
              break;  // refused: the drain has begun
            }
          }
        }
      });
    while (submitting < 4) std::this_thread::yield();
    while (pool.stats().submitted < 200) std::this_thread::yield();
    CHECK(pool.drain(10s));
    stop = true;
    for (auto& t : threads) t.join();
    for (auto& mine : by_thread)
      for (auto& s : mine) {
        REQUIRE(s.handle.wait_for(5s));
        int got = 0;
        try {
          got = s.handle.result();
        } catch (const pc::job_cancelled&) {
          ++(s.ended_at_return ? refused : late);  // late: accepted by job(), then cancelled by the drain
          continue;
        }
        CHECK(got == 2);
        ++ran;
      }
  }
  CHECK(late == 0);
  CHECK(refused > 0);
  CHECK(ran > 0);
}
