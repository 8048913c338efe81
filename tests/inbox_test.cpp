// The submission inbox: what submitters leave while the pool's lock is taken.

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "submission_inbox.hpp"

namespace {

using pc_inbox = parallelcode::detail::submission_inbox;
using job_ptr = pc_inbox::job_ptr;

job_ptr make_job(std::uint64_t id) {
  auto job = std::make_shared<parallelcode::detail::job_state<int>>();
  job->id = id;
  return job;
}

std::vector<std::uint64_t> take_ids(pc_inbox& inbox) {
  std::vector<std::uint64_t> ids;
  inbox.take([&](job_ptr job) { ids.push_back(job->id); });
  return ids;
}

// Spins on pred up to a deadline; true if it held.
template <class Pred>
bool within(Pred pred, std::chrono::seconds deadline = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST_CASE("jobs pushed to an open inbox come out oldest first") {
  pc_inbox inbox;
  inbox.open();
  for (std::uint64_t id = 1; id <= 5; ++id) {
    job_ptr job = make_job(id);
    CHECK(inbox.push(job, [] {}));
    CHECK_FALSE(job);  // the inbox has it now
  }
  CHECK_FALSE(inbox.empty());
  CHECK(take_ids(inbox) == std::vector<std::uint64_t>{1, 2, 3, 4, 5});
  CHECK(inbox.empty());
}

TEST_CASE("taking from an empty inbox says there was nothing") {
  pc_inbox inbox;
  inbox.open();
  CHECK(inbox.empty());
  CHECK_FALSE(inbox.take([](job_ptr) { FAIL("nothing was pushed"); }));
}

TEST_CASE("an inbox refuses pushes until it is opened and once it is closed, and leaves the job with the caller") {
  pc_inbox inbox;
  job_ptr job = make_job(1);
  bool inside = false;
  CHECK_FALSE(inbox.push(job, [&] { inside = true; }));
  inbox.open();
  inbox.close();
  CHECK_FALSE(inbox.push(job, [&] { inside = true; }));
  CHECK(job);
  CHECK_FALSE(inside);
  CHECK(inbox.empty());
}

TEST_CASE("what was pushed before the inbox closed can still be taken") {
  pc_inbox inbox;
  inbox.open();
  job_ptr job = make_job(7);
  REQUIRE(inbox.push(job, [] {}));
  inbox.close();
  CHECK(take_ids(inbox) == std::vector<std::uint64_t>{7});
}

TEST_CASE("a job taken from the inbox is held by the taker alone") {
  pc_inbox inbox;
  inbox.open();
  job_ptr job = make_job(1);
  const std::weak_ptr<parallelcode::detail::job_state_base> seen = job;
  REQUIRE(inbox.push(job, [] {}));
  CHECK(seen.use_count() == 1);  // the inbox's own reference keeps it alive
  job_ptr taken;
  inbox.take([&](job_ptr j) { taken = std::move(j); });
  CHECK(seen.use_count() == 1);
  CHECK(taken->next_in_inbox == nullptr);
  taken.reset();
  CHECK(seen.expired());
}

TEST_CASE("closing waits for a submitter inside a push to leave") {
  pc_inbox inbox;
  inbox.open();
  std::atomic<bool> entered{false};
  std::atomic<bool> closed{false};
  bool closed_while_inside = true;
  bool saw_gate_shut = false;
  std::thread submitter([&] {
    job_ptr job = make_job(1);
    inbox.push(job, [&] {
      entered = true;
      // close() has shut the gate once a second push is refused; it must still be waiting for us.
      saw_gate_shut = within([&] {
        job_ptr probe = make_job(2);
        return !inbox.push(probe, [] {});
      });
      closed_while_inside = closed.load();
    });
  });
  REQUIRE(within([&] { return entered.load(); }));
  std::thread closer([&] {
    inbox.close();
    closed = true;
  });
  submitter.join();
  closer.join();
  CHECK(saw_gate_shut);
  CHECK_FALSE(closed_while_inside);
  CHECK(closed.load());
  const auto ids = take_ids(inbox);  // the job, then the probes that got in before the gate shut
  REQUIRE_FALSE(ids.empty());
  CHECK(ids.front() == 1);
  CHECK(std::count(ids.begin(), ids.end(), 2u) == static_cast<std::ptrdiff_t>(ids.size() - 1));
}

TEST_CASE("concurrent pushes from many threads all arrive exactly once, each thread's in its order") {
  constexpr unsigned threads = 4;
  constexpr std::uint64_t each = 20000;
  pc_inbox inbox;
  inbox.open();
  std::atomic<unsigned> done{0};
  std::vector<std::thread> submitters;
  for (unsigned t = 0; t < threads; ++t)
    submitters.emplace_back([&, t] {
      for (std::uint64_t i = 0; i < each; ++i) {
        job_ptr job = make_job(t * each + i);
        inbox.push(job, [] {});
      }
      ++done;
    });
  std::vector<unsigned> arrived(threads * each, 0);
  std::vector<std::int64_t> last(threads, -1);
  bool in_order = true;
  auto drain = [&] {
    inbox.take([&](job_ptr job) {
      const auto id = job->id;
      ++arrived[id];
      const auto t = id / each;
      in_order &= static_cast<std::int64_t>(id % each) > last[t];
      last[t] = static_cast<std::int64_t>(id % each);
    });
  };
  // Taken while they push, as the pool's thread does.
  const bool all_done = within([&] {
    drain();
    return done.load() == threads;
  }, std::chrono::seconds(60));
  for (auto& s : submitters) s.join();
  drain();
  CHECK(all_done);
  CHECK(in_order);
  std::size_t once = 0;
  for (unsigned n : arrived) once += n == 1;
  CHECK(once == arrived.size());
  CHECK(inbox.empty());
}
