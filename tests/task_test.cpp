// Named tasks: registered at load time, run by name with the binary codec from
// C++ and with JSON (by field name) from the daemon's clients.

#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include <parallelcode/task.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

namespace {

struct greeting {
  std::string text;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(text));
  }
};

struct point {
  int x = 0;
  int y = 0;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(x), CEREAL_NVP(y));
  }
};

struct numbers {
  std::vector<double> values;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(values));
  }
};

std::string shout(const greeting& g) { return g.text + "!"; }

}  // namespace

PARALLELCODE_TASK("test.hello", [](const greeting& g) { return "Hello " + g.text + "!"; });
PARALLELCODE_TASK("test.shout", &shout);
PARALLELCODE_TASK("test.swap", [](point p) { return point{p.y, p.x}; });
PARALLELCODE_TASK("test.echo", [](const pc::json& j) { return j; });
PARALLELCODE_TASK("test.nothing", [](int) {});
PARALLELCODE_TASK("test.sum", [](const numbers& n) { return std::accumulate(n.values.begin(), n.values.end(), 0.0); });
PARALLELCODE_TASK("test.bytes", [](const greeting& g) { return std::string(g.text.rbegin(), g.text.rend()); });
PARALLELCODE_TASK("test.hello", [](int x) { return x; });  // taken: a conflict, the first stands

TEST_CASE("a task registered with PARALLELCODE_TASK runs by name from C++") {
  pc::pool pool;
  pool.start({.workers = 1});
  CHECK(pool.task<std::string>("test.hello", greeting{"world"}).result() == "Hello world!");
  CHECK(pool.task<std::string>("test.shout", greeting{"hey"}).result() == "hey!");
  const point p = pool.task<point>("test.swap", point{1, 2}).result();
  CHECK(p.x == 2);
  CHECK(p.y == 1);
}

TEST_CASE("an unknown task, or one called with other types, is refused with invalid_argument") {
  pc::pool pool;
  pool.start({.workers = 1});
  CHECK_THROWS_AS(pool.task<std::string>("test.nope", greeting{"x"}), std::invalid_argument);
  CHECK_THROWS_AS(pool.task<int>("test.hello", greeting{"x"}), std::invalid_argument);
  CHECK_THROWS_AS(pool.task<std::string>("test.hello", 5), std::invalid_argument);
}

TEST_CASE("run_json takes the arguments by field name and answers compact JSON") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto run = [&](std::string task, std::string args) {
    return pool.job(&pc::run_json, pc::json_call{std::move(task), std::move(args)}).result();
  };
  CHECK(run("test.hello", R"({"text":"world"})") == R"("Hello world!")");
  CHECK(run("test.swap", R"({"y": 7, "x": 3})") == R"({"x":7,"y":3})");
  CHECK(run("test.echo", R"([1, {"a": null}])") == R"([1, {"a": null}])");
  CHECK(run("test.nothing", "5") == "null");
}

TEST_CASE("run_json keeps strings whole past a NUL and doubles exact, both ways") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto run = [&](std::string task, std::string args) {
    return pool.job(&pc::run_json, pc::json_call{std::move(task), std::move(args)}).result();
  };
  CHECK(run("test.hello", R"({"text":"ab\u0000cd"})") == R"("Hello ab\u0000cd!")");
  CHECK(run("test.sum", R"({"values":[0.1,0.2]})") == "0.30000000000000004");
  CHECK(run("test.sum", R"({"values":[8.5744025984476e+19]})") == "8.5744025984476e+19");
  CHECK(run("test.sum", R"({"values":[0.1,0.7000000000000001,1e-400]})") == "0.8");
}

TEST_CASE("a result the JSON encoder cannot write fails with payload_error saying why") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto error_of = [&](std::string task, std::string args) -> std::string {
    try {
      pool.job(&pc::run_json, pc::json_call{std::move(task), std::move(args)}).result();
    } catch (const pc::payload_error& e) {
      return e.what();
    }
    return "no payload_error";
  };
  CHECK(error_of("test.sum", R"({"values":[1e308,1e308]})")
            .find("the result cannot be written as JSON: inf is not a JSON number") != std::string::npos);
  // The bytes of U+1F600 reversed are no UTF-8.
  CHECK(error_of("test.bytes", R"({"text":"\ud83d\ude00"})")
            .find("the result cannot be written as JSON: a string is not UTF-8") != std::string::npos);
  CHECK(error_of("test.sum", R"({"values":[1e400]})").find("out of the range of a double") != std::string::npos);
  CHECK(pool.workers()[0].respawns == 0);
}

TEST_CASE("JSON that does not fit the task fails with payload_error, an unknown task with job_failed") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto run = [&](std::string task, std::string args) {
    return pool.job(&pc::run_json, pc::json_call{std::move(task), std::move(args)});
  };
  CHECK_THROWS_AS(run("test.hello", R"({"txt":"world"})").result(), pc::payload_error);
  CHECK_THROWS_AS(run("test.swap", R"({"x":"3","y":1})").result(), pc::payload_error);
  CHECK_THROWS_AS(run("test.hello", R"(5)").result(), pc::payload_error);
  try {
    run("test.nope", "{}").result();
    FAIL("an unknown task should fail");
  } catch (const pc::job_failed& e) {
    CHECK(e.message().find("test.nope") != std::string::npos);
  }
  CHECK(pool.workers()[0].respawns == 0);
}

TEST_CASE("tasks() lists each task with its types, and a name registered twice is a conflict") {
  bool found = false;
  for (const auto& t : pc::tasks()) {
    if (t.name != "test.swap") continue;
    found = true;
    CHECK(t.argument.find("point") != std::string::npos);
    CHECK(t.result.find("point") != std::string::npos);
  }
  CHECK(found);
  CHECK(pc::has_task("test.echo"));
  CHECK_FALSE(pc::has_task("test.nope"));
  const auto conflicts = pc::task_conflicts();
  CHECK(std::count(conflicts.begin(), conflicts.end(), "test.hello") == 1);
}
