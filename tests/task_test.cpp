// Named tasks: registered at load time, run by name with the binary codec from
// C++ and with JSON (by field name) from the daemon's clients.

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

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

struct item {
  std::string label;
  float weight = 0;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(label), CEREAL_NVP(weight));
  }
};

// What users' tasks take: nested records, maps, optionals, variants, fixed arrays.
struct order {
  std::vector<item> items;
  std::map<std::string, std::uint16_t> counts;
  std::optional<std::string> note;
  std::variant<std::int64_t, std::string> ref;
  std::array<bool, 2> flags{};
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(items), CEREAL_NVP(counts), CEREAL_NVP(note), CEREAL_NVP(ref), CEREAL_NVP(flags));
  }
};

// A type that holds itself, and one with fields that have no names.
struct tree {
  std::string name;
  std::vector<tree> children;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(name), CEREAL_NVP(children));
  }
};

struct pair_of {
  std::int32_t first = 0;
  std::string second;
  template <class A>
  void serialize(A& a) {
    a(first, second);
  }
};

std::string shout(const greeting& g) { return g.text + "!"; }

const pc::task_info& listed(const std::string& name) {
  static const std::vector<pc::task_info> all = pc::tasks();
  const auto it = std::find_if(all.begin(), all.end(), [&](const pc::task_info& t) { return t.name == name; });
  REQUIRE(it != all.end());
  return *it;
}

}  // namespace

PARALLELCODE_TASK("test.hello", [](const greeting& g) { return "Hello " + g.text + "!"; });
PARALLELCODE_TASK("test.shout", &shout);
PARALLELCODE_TASK("test.swap", [](point p) { return point{p.y, p.x}; });
PARALLELCODE_TASK("test.echo", [](const pc::json& j) { return j; });
PARALLELCODE_TASK("test.nothing", [](int) {});
PARALLELCODE_TASK("test.sum", [](const numbers& n) { return std::accumulate(n.values.begin(), n.values.end(), 0.0); });
PARALLELCODE_TASK("test.bytes", [](const greeting& g) { return std::string(g.text.rbegin(), g.text.rend()); });
PARALLELCODE_TASK("test.order", [](const order& o) { return o.items.size(); });
PARALLELCODE_TASK("test.tree", [](const tree& t) { return t; });
PARALLELCODE_TASK("test.pair", [](const pair_of& p) { return p.second; });
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

TEST_CASE("strings, bools and integers are written without cereal exactly as cereal's way writes them") {
  auto through_cereal = [](const auto& v) {
    std::ostringstream out;
    {
      cereal::JSONOutputArchive ar(out, cereal::JSONOutputArchive::Options::NoIndent());
      ar(cereal::make_nvp("value0", v));
    }
    return pc::detail::compact_json_value(out.str());
  };
  for (const std::string& s : {std::string(), std::string("Hello world!"), std::string("a\0b", 3),
                               std::string("\" \\ / \b \f \n \r \t \x01 \x1f \x7f"),
                               std::string("\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x80\xa8")}) {
    CAPTURE(s);
    CHECK(pc::detail::to_json(s) == through_cereal(s));
  }
  CHECK(pc::detail::to_json(true) == through_cereal(true));
  CHECK(pc::detail::to_json(false) == through_cereal(false));
  CHECK(pc::detail::to_json(std::numeric_limits<std::int64_t>::min()) == through_cereal(std::numeric_limits<std::int64_t>::min()));
  CHECK(pc::detail::to_json(std::numeric_limits<std::uint64_t>::max()) == through_cereal(std::numeric_limits<std::uint64_t>::max()));
  CHECK(pc::detail::to_json(-7) == through_cereal(-7));
  CHECK(pc::detail::to_json(static_cast<unsigned short>(65535)) == through_cereal(static_cast<unsigned short>(65535)));
  CHECK(pc::detail::to_json(-5LL) == through_cereal(-5LL));  // "-5": cereal's own way
  CHECK(pc::detail::to_json(5UL) == through_cereal(5UL));
  CHECK_THROWS_WITH_AS(pc::detail::to_json(std::string("\xff")),
                       doctest::Contains("the result cannot be written as JSON: a string is not UTF-8"),
                       pc::detail::codec_error);
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

TEST_CASE("tasks() describes each task's JSON argument and result as a JSON Schema") {
  CHECK(listed("test.hello").argument_schema ==
        R"({"type":"object","properties":{"text":{"type":"string"}},"required":["text"]})");
  CHECK(listed("test.hello").result_schema == R"({"type":"string"})");
  CHECK(listed("test.swap").argument_schema ==
        R"({"type":"object","properties":{"x":{"type":"integer","format":"int32","minimum":-2147483648,)"
        R"("maximum":2147483647},"y":{"type":"integer","format":"int32","minimum":-2147483648,"maximum":2147483647}},)"
        R"("required":["x","y"]})");
  CHECK(listed("test.sum").argument_schema ==
        R"({"type":"object","properties":{"values":{"type":"array","items":{"type":"number","format":"double"}}},)"
        R"("required":["values"]})");
  CHECK(listed("test.nothing").result_schema == R"({"type":"null"})");
  CHECK(listed("test.echo").argument_schema == "{}");  // pc::json: any JSON
  CHECK(listed("test.echo").result_schema == "{}");
}

TEST_CASE("a schema follows containers, maps, optionals and variants to their elements") {
  const std::string s = listed("test.order").argument_schema;
  CHECK(s.find(R"("items":{"type":"array","items":{"type":"object","properties":{"label":{"type":"string"},)"
               R"("weight":{"type":"number","format":"float"}},"required":["label","weight"]}})") != std::string::npos);
  CHECK(s.find(R"("counts":{"type":"array","items":{"type":"object","properties":{"key":{"type":"string"},)"
               R"("value":{"type":"integer","format":"uint16","minimum":0,"maximum":65535}},)"
               R"("required":["key","value"]}})") != std::string::npos);
  CHECK(s.find(R"("note":{"type":"object","properties":{"nullopt":{"type":"boolean"},"data":{"type":"string"}},)"
               R"("required":["nullopt"]})") != std::string::npos);
  CHECK(s.find(R"("ref":{"type":"object","properties":{"index":{"type":"integer","format":"int32",)") !=
        std::string::npos);
  CHECK(s.find(R"("data":{"oneOf":[{"type":"integer","format":"int64")") != std::string::npos);
  CHECK(s.find(R"(,{"type":"string"}]}},"required":["index","data"]})") != std::string::npos);
  CHECK(s.find(R"("flags":{"type":"array","items":{"type":"boolean"},"minItems":2,"maxItems":2})") !=
        std::string::npos);
  CHECK(listed("test.order").result_schema.find(R"("format":"uint64")") != std::string::npos);
}

TEST_CASE("a schema stops at a type that holds itself, and gives unnamed fields by position") {
  CHECK(listed("test.tree").argument_schema ==
        R"({"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{}}},)"
        R"("required":["name","children"]})");
  CHECK(listed("test.pair").argument_schema ==
        R"({"type":"array","prefixItems":[{"type":"integer","format":"int32","minimum":-2147483648,)"
        R"("maximum":2147483647},{"type":"string"}],"minItems":2})");
}

TEST_CASE("JSON shaped as a task's schema says is what the task reads") {
  pc::pool pool;
  pool.start({.workers = 1});
  const std::string args =
      R"({"items":[{"label":"a","weight":1.5}],"counts":[{"key":"k","value":3}],"note":{"nullopt":false,"data":"n"},)"
      R"("ref":{"index":1,"data":"r"},"flags":[true,false]})";
  CHECK(pool.job(&pc::run_json, pc::json_call{"test.order", args}).result() == "1");
  CHECK(pool.job(&pc::run_json, pc::json_call{"test.pair", R"([7,"seven"])"}).result() == R"("seven")");
}
