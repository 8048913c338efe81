// Dispatch: queued jobs go to the first worker in pool order with a free slot
// (a retried job to another worker than the one it died on, where it can), and
// their frames into that worker's ring.

#include <algorithm>

#include "pool_impl.hpp"
#include "wake.hpp"

namespace parallelcode::detail {

namespace {

// The room write_frame needs to make progress with the outbox's first frame.
std::uint64_t frame_room_needed(const process& p) {
  if (p.outbox_sent > 0) return 1;
  const std::uint64_t total = frame_bytes(p.outbox.front()->payload.size());
  return total <= p.jobs.capacity() ? total : sizeof(frame_header);
}

}  // namespace

bool pool_impl::can_take(const worker_slot& slot) const {
  const process* p = slot.current.get();
  return p && p->state == process::phase::ready && !p->ending && !p->corrupt && !p->over_limit &&
         p->in_flight.size() < opts_.concurrency;
}

worker_slot* pool_impl::pick(const job_state_base& job) {
  // A retry prefers another worker than the slot it died on, if one is free.
  auto takes = [&](int id) { return can_take(slots_[static_cast<std::size_t>(id)]); };
  auto it = std::find_if(order_.begin(), order_.end(), [&](int id) { return id != job.avoid && takes(id); });
  if (it == order_.end()) it = std::find_if(order_.begin(), order_.end(), takes);
  return it == order_.end() ? nullptr : &slots_[static_cast<std::size_t>(*it)];
}

bool pool_impl::dispatch(outcome& out) {
  bool any = false;
  while (!queue_.empty()) {
    if (queue_.front()->claim.load() == job_state_base::cancelled) {
      queue_.pop_front();  // cancel() ended it already
      continue;
    }
    worker_slot* slot = pick(*queue_.front());
    if (!slot) break;
    int expected = job_state_base::queued;
    if (!queue_.front()->claim.compare_exchange_strong(expected, job_state_base::taken)) continue;  // just cancelled
    job_ptr job = std::move(queue_.front());
    queue_.pop_front();
    process& p = *slot->current;
    ++job->attempt;
    p.handed_job = true;
    if (job->timeout > std::chrono::milliseconds::zero()) {
      job->deadline = clock::time_point::max();  // set once its frame is wholly in the ring (flush)
      ++timed_jobs_;
    }
    p.in_flight.push_back(job);
    p.outbox.push_back(job);
    job->assign(info(*slot));
    out.jobs.push_back(std::move(job));
    move_to_back(slot->id);
    any = true;
  }
  if (!any) return false;
  for (process* p : by_channel_)
    if (p && !p->outbox.empty()) flush(*p);
  ++stats_.dispatch_batches;
  last_batch_ = clock::now();
  return true;
}

bool pool_impl::flush(process& p) {
  if (!p.pid || p.corrupt) return false;
  bool wrote = false;
  while (!p.outbox.empty()) {
    job_state_base& job = *p.outbox.front();
    frame_header h = make_header(frame_type::job, job.id, job.payload.size());
    h.invoke = reinterpret_cast<std::uint64_t>(job.invoke);
    h.fn = job.fn;
    const std::uint64_t sent = write_frame(p.jobs, h, job.payload.data(), p.outbox_sent);
    wrote |= sent != p.outbox_sent;
    p.outbox_sent = sent;
    if (sent < frame_bytes(h.size)) break;
    // The worker has it all: its time starts (a big payload's streaming is not its run).
    if (job.timeout > std::chrono::milliseconds::zero()) job.deadline = clock::now() + job.timeout;
    if (job.retries == 0) job.payload.release();  // a retry sends it again
    p.outbox.pop_front();
    p.outbox_sent = 0;
  }
  // Frames still waiting for room: the worker rings us when it makes some. Say so
  // before publishing, or the worker may drain the ring before it can see the flag.
  if (!p.outbox.empty()) p.jobs.control().producer_waiting.store(1, std::memory_order_seq_cst);
  if (wrote) {
    p.jobs.publish();
    wake_futex_sleeper(p.jobs.control().consumer_sleeping);
  }
  return wrote;
}

bool pool_impl::has_outbox_room(const process& p) const {
  return !p.outbox.empty() && p.pid && !p.corrupt && p.jobs.free_space() >= frame_room_needed(p);
}

}  // namespace parallelcode::detail
