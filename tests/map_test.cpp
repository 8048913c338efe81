// pool::map: many items in chunks of one job each, results in input order, an item's
// exception its own, a dead worker's chunk failed or retried whole.

#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <list>
#include <numeric>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace pc = parallelcode;

namespace {

struct item {
  int value = 0;
  std::string marker;  // non-empty: the first run of item 57 removes it and dies
  template <class A>
  void serialize(A& a) {
    a(value, marker);
  }
};

int twice_or_die(const item& x) {
  if (x.value == 57 && !x.marker.empty() && ::unlink(x.marker.c_str()) == 0) ::raise(SIGKILL);
  return x.value * 2;
}

std::vector<item> items(int n, const std::string& marker = "") {
  std::vector<item> out;
  for (int i = 0; i < n; ++i) out.push_back({i, marker});
  return out;
}

template <class R>
std::vector<R> finished(pc::map_handle<R>& m) {
  REQUIRE(m.wait_for(30s));
  return std::move(m).results();
}

// What a worker that lies about a chunk of 3 items could send back.
pc::detail::map_chunk_result<int> forged(int how) {
  if (how == 0) return {{1, 2}, {}};                   // a value short
  return {{1, 2, 3}, {{7, "std::runtime_error", "x"}}};  // an error for an item it never had
}

}  // namespace

TEST_CASE("a chunk result that does not match its items fails them with payload_error, never out of bounds") {
  pc::pool pool;
  pool.start({.workers = 1});
  for (int how : {0, 1}) {
    CAPTURE(how);
    std::vector<pc::map_handle<int>::chunk_handle> chunks;
    chunks.push_back(pool.job(&forged, how));
    pc::map_handle<int> m(std::move(chunks), {3}, 3);
    REQUIRE(m.wait_for(30s));
    const auto outcomes = m.outcomes();
    REQUIRE(outcomes.size() == 3);
    for (const auto& o : outcomes) CHECK_THROWS_AS(std::rethrow_exception(o.error), pc::payload_error);
    CHECK_THROWS_AS(m.results(), pc::payload_error);
  }
}

TEST_CASE("map returns every item's result in input order, in several chunks") {
  pc::pool pool;
  pool.start({.workers = 2});
  std::vector<int> in(20'000);
  std::iota(in.begin(), in.end(), 0);
  auto m = pool.map([](int x) { return static_cast<long>(x) * x; }, in);
  CHECK(m.size() == in.size());
  CHECK(m.chunks() > 1);
  const auto out = finished(m);
  REQUIRE(out.size() == in.size());
  for (std::size_t i = 0; i < in.size(); ++i) REQUIRE(out[i] == static_cast<long>(i) * static_cast<long>(i));
}

TEST_CASE("map takes any input range and function pointers, and an empty range gives an empty map") {
  pc::pool pool;
  pool.start({.workers = 2});
  const std::list<item> listed{{1, ""}, {2, ""}, {3, ""}};
  auto from_list = pool.map(&twice_or_die, listed);
  CHECK(finished(from_list) == std::vector<int>{2, 4, 6});
  auto from_view = pool.map([](int x) { return std::to_string(x); }, std::views::iota(0, 5));
  CHECK(finished(from_view) == std::vector<std::string>{"0", "1", "2", "3", "4"});
  auto empty = pool.map([](int x) { return x; }, std::vector<int>{});
  CHECK(empty.size() == 0);
  CHECK(empty.chunks() == 0);
  CHECK(finished(empty).empty());
}

TEST_CASE("a chunk_size cuts the items into chunks of that many") {
  pc::pool pool;
  pool.start({.workers = 2});
  auto m = pool.map(&twice_or_die, items(1000), {.chunk_size = 64});
  CHECK(m.chunks() == 16);  // 15 of 64 and one of 40
  const auto out = finished(m);
  CHECK(out.size() == 1000);
  CHECK(out[999] == 1998);
}

TEST_CASE("an item that throws fails alone: its outcome holds job_failed, the others their values") {
  pc::pool pool;
  pool.start({.workers = 2});
  auto m = pool.map(
      [](int x) {
        if (x % 100 == 7) throw std::out_of_range("item " + std::to_string(x));
        return x + 1;
      },
      std::views::iota(0, 1000), {.chunk_size = 50});
  REQUIRE(m.wait_for(30s));
  const auto outcomes = m.outcomes();
  REQUIRE(outcomes.size() == 1000);
  for (int i = 0; i < 1000; ++i) {
    const auto& o = outcomes[static_cast<std::size_t>(i)];
    if (i % 100 == 7) {
      REQUIRE_FALSE(o);
      try {
        std::rethrow_exception(o.error);
      } catch (const pc::job_failed& e) {
        CHECK(e.type() == "std::out_of_range");
        CHECK(e.message() == "item " + std::to_string(i));
      }
    } else {
      REQUIRE(o);
      CHECK(*o.value == i + 1);
    }
  }
  CHECK_THROWS_WITH_AS(m.results(), doctest::Contains("item 7"), pc::job_failed);
  // The pool goes on: no worker died for it.
  CHECK(pool.stats().respawns == 0);
}

TEST_CASE("a chunk whose worker dies fails whole with worker_lost; with retries it runs again whole") {
  pc::pool pool;
  pool.start({.workers = 2});
  const std::string marker = test::temp_path("map");
  test::touch(marker);
  auto lost = pool.map(&twice_or_die, items(200, marker), {.chunk_size = 50});
  REQUIRE(lost.wait_for(30s));
  const auto outcomes = lost.outcomes();
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    if (i / 50 == 57 / 50) {
      CHECK_THROWS_AS(std::rethrow_exception(outcomes[i].error), pc::worker_lost);
    } else {
      REQUIRE(outcomes[i]);
      CHECK(*outcomes[i].value == static_cast<int>(i) * 2);
    }
  }
  CHECK_THROWS_AS(lost.results(), pc::worker_lost);

  test::touch(marker);
  auto retried = pool.map(&twice_or_die, items(200, marker), {.chunk_size = 50, .chunk = {.retries = 1}});
  const auto out = finished(retried);
  REQUIRE(out.size() == 200);
  for (std::size_t i = 0; i < out.size(); ++i) CHECK(out[i] == static_cast<int>(i) * 2);
  CHECK(pool.stats().retried == 1);
}

TEST_CASE("cancel takes back the chunks no worker has yet; their items fail with job_cancelled") {
  pc::pool pool;
  pool.start({.workers = 1});
  auto m = pool.map(&test::sleep_ms, std::vector<int>(10, 100), {.chunk_size = 1});
  CHECK(m.cancel());
  REQUIRE(m.wait_for(30s));
  std::size_t ran = 0, cancelled = 0;
  for (const auto& o : m.outcomes()) {
    if (o) {
      ++ran;
      continue;
    }
    CHECK_THROWS_AS(std::rethrow_exception(o.error), pc::job_cancelled);
    ++cancelled;
  }
  CHECK(ran + cancelled == 10);
  CHECK(cancelled >= 1);
}

TEST_CASE("the chunk size chosen for tiny items is many, and for slow ones few, four chunks a slot at least") {
  using pc::detail::map_chunk_size;
  // 32 items in 20 us: 0.6 us each, so about 1600 make a millisecond.
  CHECK(map_chunk_size(1'000'000, 2, 32, 20us) == 1600);
  // But no more than a quarter of a slot's share.
  CHECK(map_chunk_size(4'000, 2, 32, 20us) == 500);
  // 32 items not back after 2 ms: each costs more than 62 us.
  CHECK(map_chunk_size(1'000, 2, 32, 2ms) == 16);
  CHECK(map_chunk_size(1'000, 2, 32, 1s) == 1);
  // An input of unknown size: only the cost counts.
  CHECK(map_chunk_size(0, 2, 32, 20us) == 1600);
}
