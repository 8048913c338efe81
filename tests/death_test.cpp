// Workers die; jobs on them fail with worker_lost, the pool respawns them, and
// nothing of the pool outlives the host.

#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

namespace {

// Runs a job that never ends, kills its worker with `kill_it`, and checks what the caller sees.
void check_busy_worker_killed(const std::function<void(pc::pool&, pid_t)>& kill_it) {
  pc::pool pool;
  pool.start({.workers = 3});
  auto job = pool.job(&test::blocks_forever, 0);
  const pc::worker_info w = job.worker();
  kill_it(pool, w.pid);
  REQUIRE(job.wait_for(5s));
  try {
    job.result();
    FAIL("result() should have thrown");
  } catch (const pc::worker_lost& e) {
    CHECK(e.pid() == w.pid);
    CHECK(e.signal() == SIGKILL);
    CHECK(e.exit_status() == -1);
    CHECK(std::string(e.what()).find("SIGKILL") != std::string::npos);
  }
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 3, {w.pid}); }));
  CHECK(test::process_gone(w.pid));
  const auto ws = pool.workers();
  const auto same_id = std::find_if(ws.begin(), ws.end(), [&](const auto& x) { return x.id == w.id; });
  REQUIRE(same_id != ws.end());
  CHECK(same_id->respawns == 1);
  CHECK(pool.stats().respawns == 1);
  // Every worker, the new one too, takes jobs again.
  std::vector<pc::job_handle<pid_t>> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(pool.job([](int) {
    for (auto until = std::chrono::steady_clock::now() + 20ms; std::chrono::steady_clock::now() < until;) {
    }
    return ::getpid();
  }, i));
  std::set<pid_t> served;
  for (auto& j : jobs) served.insert(j.result());
  CHECK(served.size() == 3);
  CHECK(served.count(same_id->pid) == 1);
}

}  // namespace

TEST_CASE("kill(pid) of a busy worker gives its job worker_lost (SIGKILL) and the pool is back to N workers") {
  check_busy_worker_killed([](pc::pool& pool, pid_t pid) { CHECK(pool.kill(pid)); });
}

TEST_CASE("a SIGKILL sent with ::kill from outside the library does the same") {
  check_busy_worker_killed([](pc::pool&, pid_t pid) { REQUIRE(::kill(pid, SIGKILL) == 0); });
}

TEST_CASE("kill refuses a pid that is not one of the pool's workers and signals nothing") {
  pc::pool pool;
  pool.start({.workers = 2});
  const pid_t fork_server = pool.stats().fork_server;
  CHECK_FALSE(pool.kill(::getpid()));
  CHECK_FALSE(pool.kill(1));
  CHECK_FALSE(pool.kill(0));
  CHECK_FALSE(pool.kill(-1));
  CHECK_FALSE(pool.kill(fork_server));
  const pid_t stranger = ::fork();
  if (stranger == 0) {
    ::pause();
    ::_exit(0);
  }
  CHECK_FALSE(pool.kill(stranger));
  CHECK(test::process_alive(stranger));
  CHECK(test::process_alive(fork_server));
  ::kill(stranger, SIGKILL);
  ::waitpid(stranger, nullptr, 0);
  CHECK(pool.stats().respawns == 0);
}

TEST_CASE("a worker that exits in a job reports its exit status; one that crashes reports the signal") {
  pc::pool pool;
  pool.start({.workers = 2});
  auto exits = pool.job([](int code) -> int { ::_exit(code); }, 3);
  try {
    exits.result();
    FAIL("result() should have thrown");
  } catch (const pc::worker_lost& e) {
    CHECK(e.signal() == 0);
    CHECK(e.exit_status() == 3);
  }
  auto aborts = pool.job([](int) -> int { std::abort(); }, 0);
  try {
    aborts.result();
    FAIL("result() should have thrown");
  } catch (const pc::worker_lost& e) {
    CHECK(e.signal() == SIGABRT);
  }
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 2); }));
  CHECK(pool.job([](int x) { return x * 2; }, 4).result() == 8);
}

TEST_CASE("queued jobs survive their worker's death and run on its replacement") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto doomed = pool.job(&test::blocks_forever, 0);
  std::vector<pc::job_handle<int>> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(pool.job([](int x) { return x + 100; }, i));
  const pid_t pid = doomed.worker().pid;
  CHECK(pool.stats().queued == 5);
  REQUIRE(pool.kill(pid));
  CHECK_THROWS_AS(doomed.result(), pc::worker_lost);
  for (int i = 0; i < 5; ++i) {
    REQUIRE(queued[i].wait_for(5s));
    CHECK(queued[i].result() == i + 100);
    CHECK(queued[i].worker().pid != pid);
  }
}

TEST_CASE("the other jobs of a worker with concurrency 2 fail with it, and only they") {
  pc::pool pool;
  pool.start({.workers = 2, .concurrency = 2});
  auto a = pool.job(&test::blocks_forever, 0);
  auto b = pool.job(&test::blocks_forever, 1);
  auto c = pool.job(&test::blocks_forever, 2);
  const pid_t victim = a.worker().pid;
  // a went to worker 0, b to worker 1, c back to worker 0.
  REQUIRE(c.worker().pid == victim);
  REQUIRE(b.worker().pid != victim);
  REQUIRE(pool.kill(victim));
  CHECK_THROWS_AS(a.result(), pc::worker_lost);
  CHECK_THROWS_AS(c.result(), pc::worker_lost);
  CHECK_FALSE(b.wait_for(100ms));
}

TEST_CASE("the host's signal handlers and signal mask stay out of the workers") {
  static volatile sig_atomic_t host_handler_ran = 0;
  struct sigaction sa{};
  sa.sa_handler = [](int) { host_handler_ran = 1; };
  REQUIRE(::sigaction(SIGUSR1, &sa, nullptr) == 0);
  pc::pool pool;
  pool.start({.workers = 1});
  // In the worker SIGUSR1 has its default action again: it kills.
  auto j = pool.job([](int) { ::raise(SIGUSR1); return 0; }, 0);
  try {
    j.result();
    FAIL("the worker should have died of SIGUSR1");
  } catch (const pc::worker_lost& e) {
    CHECK(e.signal() == SIGUSR1);
  }
  CHECK(host_handler_ran == 0);
  sa.sa_handler = SIG_DFL;
  ::sigaction(SIGUSR1, &sa, nullptr);
}

TEST_CASE("starting a pool installs no signal handler and changes no signal mask in the host") {
  std::vector<struct sigaction> before(NSIG);
  for (int s = 1; s < NSIG; ++s) ::sigaction(s, nullptr, &before[s]);
  sigset_t mask_before;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &mask_before);
  pc::pool pool;
  pool.start({.workers = 2});
  pool.job([](int x) { return x; }, 1).result();
  for (int s = 1; s < NSIG; ++s) {
    struct sigaction now{};
    ::sigaction(s, nullptr, &now);
    const bool same = now.sa_handler == before[s].sa_handler;
    CHECK_MESSAGE(same, "signal " << s);
  }
  sigset_t mask_now;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &mask_now);
  for (int s = 1; s < NSIG; ++s) CHECK(sigismember(&mask_now, s) == sigismember(&mask_before, s));
}

TEST_CASE("the workers and the fork server die when the host process dies") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t host = ::fork();
  if (host == 0) {
    ::close(fds[0]);
    pc::pool pool;
    pool.start({.workers = 3});
    std::vector<pid_t> all = test::pids(pool.workers());
    all.push_back(pool.stats().fork_server);
    (void)!::write(fds[1], all.data(), all.size() * sizeof(pid_t));
    ::pause();
    ::_exit(0);
  }
  ::close(fds[1]);
  std::vector<pid_t> all(4);
  std::size_t got = 0;
  while (got < all.size() * sizeof(pid_t)) {
    const ssize_t n = ::read(fds[0], reinterpret_cast<char*>(all.data()) + got, all.size() * sizeof(pid_t) - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fds[0]);
  REQUIRE(got == all.size() * sizeof(pid_t));
  for (pid_t pid : all) REQUIRE(test::process_alive(pid));
  REQUIRE(::kill(host, SIGKILL) == 0);
  ::waitpid(host, nullptr, 0);
  for (pid_t pid : all) CHECK_MESSAGE(test::process_gone(pid, 5000ms), "pid " << pid << " outlived its host");
}

TEST_CASE("a forked copy of the host cannot drive the pool it inherited") {
  pc::pool pool;
  pool.start({.workers = 1});
  const pid_t worker = pool.workers()[0].pid;
  const pid_t child = ::fork();
  if (child == 0) {
    int code = 0;
    auto j = pool.job([](int x) { return x; }, 1);
    try {
      j.result();
      code = 1;
    } catch (const pc::job_cancelled&) {
    }
    if (pool.kill(worker)) code = 2;
    pool.free();  // touches nothing of the original's
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(test::process_alive(worker));
  CHECK(pool.job([](int x) { return x + 1; }, 1).result() == 2);
}

namespace {

pid_t parent_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // The command name may hold spaces: the fields go on after its closing parenthesis.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  char state;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

}  // namespace

TEST_CASE("every worker, first or respawned, is a child of the fork server, itself a child of the host") {
  pc::pool pool;
  pool.start({.workers = 2});
  const pid_t fork_server = pool.stats().fork_server;
  CHECK(parent_of(fork_server) == ::getpid());
  for (const auto& w : pool.workers()) CHECK(parent_of(w.pid) == fork_server);
  const pid_t first = pool.workers()[0].pid;
  REQUIRE(pool.kill(first));
  REQUIRE(test::eventually([&] { return test::all_ready(pool, 2, {first}); }));
  for (const auto& w : pool.workers()) CHECK(parent_of(w.pid) == fork_server);
}

TEST_CASE("the pool never reaps a child of the host's own") {
  const pid_t mine = ::fork();
  if (mine == 0) ::_exit(42);
  pc::pool pool;
  pool.start({.workers = 2});
  // Deaths and respawns in the pool while the host's child is a zombie waiting for the host.
  for (int i = 0; i < 3; ++i) {
    const pid_t victim = pool.workers()[0].pid;
    REQUIRE(pool.kill(victim));
    REQUIRE(test::eventually([&] { return test::all_ready(pool, 2, {victim}); }));
  }
  pool.free();
  int status = 0;
  REQUIRE(::waitpid(mine, &status, 0) == mine);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 42);
}

// ThreadSanitizer cannot start a thread in the fork of a multithreaded process ("dup thread with used id", exit 66).
TEST_CASE("a forked copy of the host can start its own copy of the pool afresh" * doctest::skip(test::under_tsan)) {
  pc::pool pool;
  pool.start({.workers = 1});
  const pid_t child = ::fork();
  if (child == 0) {
    int code = 0;
    try {
      pool.start({.workers = 1});
      if (pool.job([](int x) { return x + 5; }, 1).result() != 6) code = 1;
      pool.free();
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(pool.job([](int x) { return x; }, 3).result() == 3);
}

namespace {

constexpr uid_t nobody = 65534;

void drop_to_nobody(int) {
  if (::setresgid(nobody, nobody, nobody) != 0 || ::setresuid(nobody, nobody, nobody) != 0) std::abort();
}

uid_t uid_of(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string word;
  while (status >> word)
    if (word == "Uid:") {
      uid_t real = 0;
      status >> real;
      return real;
    }
  return static_cast<uid_t>(-1);
}

// In a child host: a pool whose worker_init drops to nobody runs a job that blocks;
// the test SIGKILLs the host and expects the worker and the fork server gone within 5 s.
void check_unprivileged_busy_worker_dies_with_host() {
  if (::geteuid() != 0) {
    WARN("not root: setresuid to nobody is not allowed, nothing to check");
    return;
  }
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t host = ::fork();
  if (host == 0) {
    ::close(fds[0]);
    pc::pool pool;
    pool.start({.workers = 1, .worker_init = &drop_to_nobody});
    auto j = pool.job(&test::blocks_forever, 0);
    const pid_t worker = j.worker().pid;
    // The job has begun; wait until the worker runs as nobody.
    if (!test::eventually([&] { return uid_of(worker) == nobody; })) ::_exit(1);
    const pid_t both[2] = {worker, pool.stats().fork_server};
    (void)!::write(fds[1], both, sizeof both);
    ::pause();
    ::_exit(0);
  }
  ::close(fds[1]);
  pid_t both[2] = {0, 0};
  std::size_t got = 0;
  while (got < sizeof both) {
    const ssize_t n = ::read(fds[0], reinterpret_cast<char*>(both) + got, sizeof both - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fds[0]);
  if (got != sizeof both) {
    ::kill(host, SIGKILL);
    ::waitpid(host, nullptr, 0);
    FAIL("the host child never reported a busy worker running as nobody");
  }
  const auto [worker, fork_server] = both;
  REQUIRE(test::process_alive(worker));
  REQUIRE(uid_of(worker) == nobody);
  REQUIRE(::kill(host, SIGKILL) == 0);
  ::waitpid(host, nullptr, 0);
  CHECK_MESSAGE(test::process_gone(fork_server, 5000ms), "the fork server " << fork_server << " outlived its host");
  const bool worker_gone = test::process_gone(worker, 5000ms);
  CHECK_MESSAGE(worker_gone, "the busy worker " << worker << ", running as nobody, outlived its host");
  if (!worker_gone) ::kill(worker, SIGKILL);  // leave no process behind for the next cases
}

}  // namespace

TEST_CASE("a busy worker whose worker_init dropped privileges still dies with a SIGKILLed host") {
  check_unprivileged_busy_worker_dies_with_host();
}

namespace {

// A job that starts a pool of its own and then never ends.
int runs_a_pool_forever(int) {
  pc::pool inner;
  inner.start({.workers = 2});
  return test::blocks_forever(0);
}

}  // namespace

// ThreadSanitizer cannot start a thread in the fork of a multithreaded process ("dup thread with used id", exit 66).
TEST_CASE("a pool a job started inside a worker dies with that worker" * doctest::skip(test::under_tsan)) {
  pc::pool pool;
  pool.start({.workers = 1});
  auto j = pool.job(&runs_a_pool_forever, 0);
  const pid_t worker = j.worker().pid;
  std::vector<pid_t> inner;  // the inner fork server, then its two workers
  REQUIRE(test::eventually([&] {
    const auto servers = test::children_of(worker);
    if (servers.size() != 1) return false;
    const auto workers = test::children_of(*servers.begin());
    if (workers.size() != 2) return false;
    inner = {*servers.begin()};
    inner.insert(inner.end(), workers.begin(), workers.end());
    return true;
  }, 10000ms));
  REQUIRE(pool.kill(worker));
  CHECK_THROWS_AS(j.result(), pc::worker_lost);
  for (pid_t pid : inner) CHECK_MESSAGE(test::process_gone(pid, 5000ms), "pid " << pid << " outlived the worker");
  CHECK(pool.job([](int x) { return x; }, 9).result() == 9);
}
