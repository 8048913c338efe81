// Dispatch: the queue to the workers in pool order, handing ahead, and frames into the rings.
//
// A retried job goes to another worker than the one it died on, where it can. When
// every worker is busy, small jobs are handed ahead to quick workers, so a worker
// that finishes one finds the next in its ring instead of waiting a round trip
// through the pool's thread.

#include <algorithm>

#include "pool_impl.hpp"
#include "wake.hpp"

namespace parallelcode::detail {

namespace {

using namespace std::chrono_literals;

constexpr std::size_t ahead_per_thread = 16;  // jobs handed ahead to a worker, per concurrency slot
constexpr std::uint64_t ahead_largest = 16 * 1024;  // a bigger job costs more than the round trip it would hide
constexpr auto stuck_after = 1ms;  // a worker whose jobs all run longer gives its ahead jobs back

// Whether the worker took the ahead job: it claims a frame before it gives its bytes back.
bool taken(const process& p, const pool_job& job) {
  if (!job.in_ring) return false;
  if (job.frame_at + frame_bytes(job->payload.size()) <= p.jobs.control().tail.load()) return true;
  return claimed(p.jobs.at(job.frame_at));
}

// The room write_frame needs to make progress with the outbox's first frame.
std::uint64_t frame_room_needed(const process& p) {
  if (p.outbox_sent > 0) return 1;
  const std::uint64_t total = frame_bytes(p.outbox_front()->payload.size());
  return total <= p.jobs.capacity() ? total : sizeof(frame_header);
}

}  // namespace

// A worker with jobs ahead takes new ones ahead too: its ring stays in order.
bool pool_impl::can_take(const worker_slot& slot) const {
  const process* p = slot.current.get();
  return p && p->state == process::phase::ready && !p->ending && !p->corrupt && !p->over_limit &&
         p->in_flight.size() < opts_.concurrency && p->ahead.empty();
}

template <class Takes>
worker_slot* pool_impl::first_in_order(const pool_job& job, Takes takes) {
  // A retry prefers another worker than the slot it died on, if one will do.
  auto it = std::find_if(order_.begin(), order_.end(), [&](int id) { return id != job.avoid && takes(id); });
  if (it == order_.end()) it = std::find_if(order_.begin(), order_.end(), takes);
  return it == order_.end() ? nullptr : &slots_[static_cast<std::size_t>(*it)];
}

worker_slot* pool_impl::pick(const pool_job& job) {
  return first_in_order(job, [&](int id) { return can_take(slots_[static_cast<std::size_t>(id)]); });
}

worker_slot* pool_impl::pick_ahead(const pool_job& job) {
  if (job->payload.size() > ahead_largest) return nullptr;
  return first_in_order(job, [&](int id) {
    const process* p = slots_[static_cast<std::size_t>(id)].current.get();
    return p && p->state == process::phase::ready && !p->ending && !p->corrupt && !p->over_limit && p->quick &&
           p->ahead.size() < ahead_per_thread * opts_.concurrency &&
           frame_bytes(job->payload.size()) * 8 <= p->jobs.capacity();  // written whole, never streamed
  });
}

void pool_impl::begin_run(worker_slot& slot, process& p, pool_job job, clock::time_point now, outcome& out) {
  job.began = now;
  job->assign(&p == slot.current.get() ? info(slot, now) : info(slot, p, now), now, job.attempt);
  out.jobs.push_back(job.job);
  p.in_flight.push_back(std::move(job));
}

void pool_impl::notice_claimed(worker_slot& slot, process& p, outcome& out) {
  const auto now = clock::now();  // one look for the batch: each claim was at most this late
  while (!p.ahead.empty() && taken(p, p.ahead.front())) {
    pool_job job = std::move(p.ahead.front());
    p.ahead.pop_front();
    if (job->timeout > 0ms) job.deadline = now + job->timeout;
    if (job->retries == 0) job->payload.release();
    begin_run(slot, p, std::move(job), now, out);
  }
}

void pool_impl::steal_back(process& p) {
  std::deque<pool_job> back;
  while (!p.ahead.empty()) {
    pool_job& job = p.ahead.back();
    if (!job.in_ring) {
      --p.outbox;  // not written yet: the outbox ends with the ahead jobs
    } else if (taken(p, job) || !settle_ahead(p.jobs.at(job.frame_at), frame_stolen)) {
      break;  // the worker has it, and every one before it
    }
    back.push_front(std::move(p.ahead.back()));
    p.ahead.pop_back();
  }
  // Back to the front of the queue, in order, as if never handed out.
  for (auto it = back.rbegin(); it != back.rend(); ++it) {
    pool_job& job = *it;
    --job.attempt;
    ++stats_.taken_back;
    if (job->timeout > 0ms) --timed_jobs_;
    job.ahead = job.in_ring = false;
    job->claim.store(job_state_base::queued);
    queue_.push_front(std::move(*it));
  }
}

bool pool_impl::steal_from_stuck(clock::time_point now) {
  bool any = false;
  for_each_process([&](worker_slot&, process& p) {
    if (p.ahead.empty() || p.in_flight.size() < opts_.concurrency || now < p.in_flight.back().began + stuck_after)
      return;
    p.quick = false;
    steal_back(p);
    any = true;
  });
  return any;
}

clock::time_point pool_impl::next_steal_locked() const {
  auto at = clock::time_point::max();
  for_each_process([&](const worker_slot&, const process& p) {
    if (!p.ahead.empty() && !p.in_flight.empty()) at = std::min(at, p.in_flight.back().began + stuck_after);
  });
  return at;
}

bool pool_impl::claims_pending() const {
  for (const process* p : by_channel_)
    if (p && !p->ahead.empty() && taken(*p, p->ahead.front())) return true;
  return false;
}

bool pool_impl::dispatch(outcome& out) {
  bool any = false;
  const auto now = clock::now();
  while (!queue_.empty()) {
    if (queue_.front()->claim.load() == job_state_base::cancelled) {
      (void)queue_.pop_front();  // cancel() ended it already
      continue;
    }
    worker_slot* slot = pick(queue_.front());
    const bool ahead = !slot;
    if (ahead) slot = pick_ahead(queue_.front());
    if (!slot) break;
    int expected = job_state_base::queued;
    if (!queue_.front()->claim.compare_exchange_strong(expected, job_state_base::taken)) continue;  // just cancelled
    pool_job job = queue_.pop_front();
    process& p = *slot->current;
    ++job.attempt;
    p.handed_job = true;
    if (job->timeout > 0ms) {
      job.deadline = clock::time_point::max();  // set once its frame is wholly in the ring, or claimed
      ++timed_jobs_;
    }
    job.ahead = ahead;
    job.in_ring = false;
    ++p.outbox;
    if (ahead) {
      ++stats_.handed_ahead;
      p.ahead.push_back(std::move(job));
    }
    else
      begin_run(*slot, p, std::move(job), now, out);
    move_to_back(slot->id);
    any = true;
  }
  if (!any) return false;
  for (process* p : by_channel_)
    if (p && p->outbox) flush(*p);
  ++stats_.dispatch_batches;
  last_batch_ = now;
  return true;
}

bool pool_impl::flush(process& p) {
  if (!p.proc.pid() || p.corrupt) return false;
  bool wrote = false;
  while (p.outbox) {
    pool_job& job = p.outbox_front();
    frame_header h = make_header(frame_type::job, job->id, job->payload.size());
    h.invoke = reinterpret_cast<std::uint64_t>(job->invoke);
    h.fn = job->fn;
    if (job.ahead) h.flags = frame_ahead;
    const std::uint64_t at = p.jobs.position();
    const std::uint64_t sent = write_frame(p.jobs, h, job->payload.data(), p.outbox_sent);
    wrote |= sent != p.outbox_sent;
    p.outbox_sent = sent;
    if (sent < frame_bytes(h.size)) break;
    if (job.ahead) {
      job.in_ring = true;  // its run starts when the worker claims it
      job.frame_at = at;
    } else {
      // The worker has it all: its time starts (a big payload's streaming is not its run).
      if (job->timeout > 0ms) job.deadline = clock::now() + job->timeout;
      if (job->retries == 0) job->payload.release();  // a retry sends it again
    }
    --p.outbox;
    p.outbox_sent = 0;
  }
  // Frames still waiting for room: the worker rings us when it makes some. Say so
  // before publishing, or the worker may drain the ring before it can see the flag.
  if (p.outbox) p.jobs.control().producer_waiting.store(1, std::memory_order_seq_cst);
  if (wrote) {
    p.jobs.publish();
    wake_futex_sleeper(p.jobs.control().consumer_sleeping);
  }
  return wrote;
}

bool pool_impl::has_outbox_room(const process& p) const {
  return p.outbox && p.proc.pid() && !p.corrupt && p.jobs.free_space() >= frame_room_needed(p);
}

}  // namespace parallelcode::detail
