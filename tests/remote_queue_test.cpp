// The remote queue's C++ API against a real redis-server and a real daemon: each case
// starts its own redis-server on a free loopback port and the daemons it needs.

#include <doctest/doctest.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <thread>
#include <string>
#include <vector>

#include <parallelcode/remote.hpp>

#include "helpers.hpp"

namespace {

namespace pc = parallelcode;
using namespace std::chrono_literals;

// A port nobody listens on now: the kernel's choice for a socket we then close.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

pid_t spawn(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::FILE* out = std::fopen(log.c_str(), "w");
    if (out) {
      ::dup2(::fileno(out), 1);
      ::dup2(::fileno(out), 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

void stop(pid_t& pid, int sig = SIGKILL) {
  if (pid <= 0) return;
  ::kill(pid, sig);
  ::waitpid(pid, nullptr, 0);
  pid = 0;
}

// The first line a command prints.
std::string output_of(const std::string& command) {
  std::FILE* p = ::popen(command.c_str(), "r");
  char line[4096] = {};
  if (p && !std::fgets(line, sizeof line, p)) line[0] = '\0';
  if (p) ::pclose(p);
  std::string s = line;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

struct redis_server {
  std::filesystem::path dir;
  int port = free_port();
  pid_t pid = 0;
  bool aof;

  // aof: every write on disk before Redis answers it (appendfsync always).
  explicit redis_server(bool with_aof = false) : aof(with_aof) {
    char temp[] = "/tmp/pc-remote-XXXXXX";
    dir = ::mkdtemp(temp);
    start();
  }
  void start() {
    pid = spawn({"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                 aof ? "yes" : "no", "--appendfsync", "always", "--dir", dir.string()},
                (dir / "redis.log").string());
    REQUIRE(test::eventually([&] { return cli("PING") == "PONG"; }, 10s));
  }
  void crash() { stop(pid); }
  ~redis_server() {
    stop(pid);
    std::filesystem::remove_all(dir);
  }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port); }
  std::string cli(const std::string& args) const {
    return output_of("redis-cli -p " + std::to_string(port) + " " + args + " 2>/dev/null");
  }
};

struct daemon_process {
  pid_t pid = 0;
  std::string socket;

  daemon_process(const redis_server& redis, const std::string& name, std::vector<std::string> more = {})
      : socket((redis.dir / (name + ".sock")).string()) {
    const char* exe = std::getenv("PARALLELCODE_DAEMON");
    REQUIRE(exe);
    std::vector<std::string> argv{exe, "--workers", "2", "--socket", socket, "--queue", redis.url(), "--lease", "1s"};
    argv.insert(argv.end(), more.begin(), more.end());
    pid = spawn(argv, (redis.dir / (name + ".log")).string());
    REQUIRE(test::eventually([&] { return std::filesystem::exists(socket); }, 10s));
  }
  ~daemon_process() { stop(pid, SIGINT); }  // at once: what it holds goes back to the queue
};

}  // namespace

TEST_SUITE("remote") {

TEST_CASE("a job submitted to the queue is answered with its result by a daemon") {
  redis_server redis;
  daemon_process d(redis, "a");
  pc::remote_queue q{redis.url(), {.name = "default"}};
  auto h = q.submit("hello", R"({"text":"world"})");
  CHECK(!h.id().empty());
  CHECK(h.wait_for(10s));
  CHECK(h.result() == R"("Hello world!")");
  // Which daemon's worker ran it, then the result.
  const std::string prefix = R"({"ok":true,"consumer":")", answer = h.answer();
  CHECK(answer.rfind(prefix, 0) == 0);
  CHECK(answer.find(R"(","worker_pid":)") != std::string::npos);
  CHECK(answer.ends_with(R"(,"result":"Hello world!"})"));
  CHECK(test::eventually([&] { return redis.cli("XLEN pc:{default}:jobs") == "0"; }));
}

TEST_CASE("a job's failure arrives as the same job_error type the local pool throws") {
  redis_server redis;
  daemon_process d(redis, "a");
  pc::remote_queue q{redis.url()};
  auto unknown = q.submit("no-such-task", "null");
  auto bad_args = q.submit("sleep", R"({"ms":"soon"})");
  auto late = q.submit("sleep", R"({"ms":5000})", {.timeout = 100ms});
  CHECK_THROWS_AS(unknown.result(), pc::job_failed);
  CHECK_THROWS_AS(bad_args.result(), pc::payload_error);
  CHECK_THROWS_AS(late.result(), pc::job_timeout);
}

TEST_CASE("a full queue refuses more jobs instead of dropping any, and takes them once there is room") {
  redis_server redis;
  pc::remote_queue q{redis.url(), {.max_length = 3}};
  std::vector<pc::remote_call> calls(5, pc::remote_call{"hello", R"({"text":"x"})"});
  auto jobs = q.submit_all(calls);
  REQUIRE(jobs.size() == 5);
  CHECK(jobs[0]);
  CHECK(jobs[2]);
  CHECK(!jobs[3]);
  CHECK(!jobs[4]);
  CHECK_THROWS_AS(q.submit("hello", R"({"text":"y"})"), pc::queue_busy);
  daemon_process d(redis, "a");
  for (int i = 0; i < 3; ++i) CHECK(jobs[i]->result() == R"("Hello x!")");
  CHECK(q.submit("hello", R"({"text":"y"})").result() == R"("Hello y!")");
}

TEST_CASE("a job no daemon took before its deadline is answered deadline_exceeded and never runs") {
  redis_server redis;
  pc::remote_queue q{redis.url()};
  auto h = q.submit("hello", R"({"text":"late"})", {.deadline = 200ms});
  CHECK(h.wait_for(5s));
  CHECK_THROWS_AS(h.result(), pc::deadline_exceeded);
  CHECK(redis.cli("XLEN pc:{default}:jobs") == "0");
}

TEST_CASE("a job a daemon takes after its deadline is answered deadline_exceeded without running") {
  redis_server redis;
  pc::remote_queue q{redis.url()};
  // Straight into the stream, past its deadline by Redis's clock: what a daemon that was busy finds.
  const std::string reply = "pc:{default}:reply:late";
  const std::string id = redis.cli("XADD pc:{default}:jobs '*' task sleep args '{\"ms\":1}' reply " + reply + " deadline 1");
  daemon_process d(redis, "a");
  const std::string answer = output_of("redis-cli -p " + std::to_string(redis.port) + " BLPOP " + reply + " 10 | tail -1");
  CHECK(answer.starts_with(id + " "));
  CHECK(answer.find("deadline_exceeded") != std::string::npos);
}

TEST_CASE("a second submit with the same idempotency key gets the first job and its answer") {
  redis_server redis;
  pc::remote_queue q{redis.url()};
  auto first = q.submit("hello", R"({"text":"once"})", {.idempotency_key = "k1"});
  auto second = q.submit("hello", R"({"text":"once"})", {.idempotency_key = "k1"});
  CHECK(first.id() == second.id());
  CHECK(redis.cli("XLEN pc:{default}:jobs") == "1");
  daemon_process d(redis, "a");
  CHECK(first.result() == R"("Hello once!")");
  CHECK(second.result() == R"("Hello once!")");
  pc::remote_queue other{redis.url()};  // later, elsewhere: the stored answer, no new job
  auto third = other.submit("hello", R"({"text":"once"})", {.idempotency_key = "k1"});
  CHECK(third.id() == first.id());
  CHECK(third.wait_for(0ms));
  CHECK(third.result() == R"("Hello once!")");
}

TEST_CASE("answers wait in the reply list while the submitter's connections are cut") {
  redis_server redis;
  pc::remote_queue q{redis.url()};
  std::vector<pc::remote_job> jobs;
  for (int i = 0; i < 50; ++i) jobs.push_back(q.submit("sleep", R"({"ms":20})"));
  daemon_process d(redis, "a");
  redis.cli("CLIENT KILL TYPE normal");  // ours and the daemon's: everyone reconnects
  for (auto& j : jobs) CHECK(j.result() == "20");
}

TEST_CASE("a submit made while Redis restarts waits for it, and nothing acknowledged before is lost") {
  redis_server redis(true);
  pc::remote_queue q{redis.url()};
  std::vector<pc::remote_job> jobs;
  for (int i = 0; i < 20; ++i) jobs.push_back(q.submit("hello", "{\"text\":\"" + std::to_string(i) + "\"}"));
  redis.crash();
  std::optional<pc::remote_job> during;
  std::thread submitter([&] { during = q.submit("hello", R"({"text":"during"})"); });
  redis.start();
  submitter.join();
  daemon_process d(redis, "a");
  for (int i = 0; i < 20; ++i) CHECK(jobs[i].result() == "\"Hello " + std::to_string(i) + "!\"");
  REQUIRE(during);
  CHECK(during->result() == R"("Hello during!")");
}

TEST_CASE("purge drops the jobs no daemon took and answers their submitters job_cancelled") {
  redis_server redis;
  pc::remote_queue q{redis.url()};
  auto a = q.submit("hello", R"({"text":"a"})");
  auto b = q.submit("hello", R"({"text":"b"})");
  const auto dropped = q.purge();
  CHECK(dropped.first == 2);
  CHECK(dropped.second == 0);
  CHECK_THROWS_AS(a.result(), pc::job_cancelled);
  CHECK_THROWS_AS(b.result(), pc::job_cancelled);
  CHECK(q.stats().length == 0);
}

TEST_CASE("retry puts a dead letter back on the queue and its answer comes to the retrying queue") {
  redis_server redis;
  pc::remote_queue q{redis.url()};
  redis.cli("XADD pc:{default}:dead '*' task hello args '{\"text\":\"again\"}' reply pc:{default}:reply:gone error 'it died' deliveries 6 job 1-1");
  const auto letters = q.dead();
  REQUIRE(letters.size() == 1);
  CHECK(letters[0].task == "hello");
  CHECK(letters[0].error == "it died");
  CHECK(letters[0].deliveries == 6);
  CHECK(letters[0].job == "1-1");
  auto h = q.retry(letters[0].id);
  CHECK(q.dead().empty());
  CHECK_THROWS_AS(q.retry(letters[0].id), std::invalid_argument);
  daemon_process d(redis, "a");
  CHECK(h.result() == R"("Hello again!")");
}

TEST_CASE("stats count the jobs waiting, the jobs held and each daemon holding them") {
  redis_server redis;
  pc::remote_queue q{redis.url()};
  daemon_process d(redis, "a", {"--prefetch", "1"});  // 2 running, 1 waiting for a worker
  std::vector<pc::remote_job> jobs;
  for (int i = 0; i < 5; ++i) jobs.push_back(q.submit("sleep", R"({"ms":3000})"));
  pc::queue_stats s;
  CHECK(test::eventually([&] { s = q.stats(); return s.pending == 3; }, 10s));
  CHECK(s.length == 5);
  CHECK(s.waiting == 2);
  REQUIRE(s.consumers.size() == 1);
  CHECK(s.consumers[0].pending == 3);
  CHECK(s.consumers[0].name.ends_with(":" + std::to_string(d.pid)));
  q.purge();
}

TEST_CASE("a Redis that cannot be reached, or a URL that is none, fails the constructor clearly") {
  const int port = free_port();
  CHECK_THROWS_AS(pc::remote_queue("redis://127.0.0.1:" + std::to_string(port)), pc::queue_error);
  CHECK_THROWS_AS(pc::remote_queue("http://example.org"), std::invalid_argument);
  CHECK_THROWS_AS(pc::remote_queue("redis://127.0.0.1:99999"), std::invalid_argument);
  CHECK_THROWS_AS(pc::remote_queue("redis://127.0.0.1", {.name = "a{b}"}), std::invalid_argument);
  try {
    pc::remote_queue q("redis://127.0.0.1:" + std::to_string(port));
  } catch (const pc::queue_error& e) {
    CHECK(std::string(e.what()).find("cannot reach Redis at redis://127.0.0.1:" + std::to_string(port)) == 0);
  }
}

}  // TEST_SUITE
