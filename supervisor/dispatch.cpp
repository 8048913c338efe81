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
  auto takes = [&](int id) { return can_take(slots_[static_cast<std::size_t>(id)]); };
  auto first = std::find_if(order_.begin(), order_.end(), [&](int id) { return id != job.avoid && takes(id); });
  if (first != order_.end()) return &slots_[static_cast<std::size_t>(*first)];
  if (job.avoid < 0 || !takes(job.avoid)) return nullptr;
  // A retry waits for another worker than the slot it died on (whose new process
  // is the least warmed up of all), unless no other worker may ever take it.
  const bool others = std::any_of(slots_.begin(), slots_.end(), [&](const worker_slot& s) {
    return s.id != job.avoid && s.current && !s.current->ending;
  });
  return others ? nullptr : &slots_[static_cast<std::size_t>(job.avoid)];
}

bool pool_impl::dispatch(outcome& out) {
  bool any = false;
  const auto now = clock::now();
  auto some_worker_free = [&] { return std::any_of(slots_.begin(), slots_.end(), [&](const worker_slot& s) { return can_take(s); }); };
  for (std::size_t i = 0; i < queue_.size() && some_worker_free();) {
    worker_slot* slot = pick(*queue_[i]);
    if (!slot) {
      ++i;  // a retry waiting for another worker: the jobs behind it go on
      continue;
    }
    job_ptr job = std::move(queue_[i]);
    queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
    process& p = *slot->current;
    ++job->attempt;
    if (job->timeout > std::chrono::milliseconds::zero()) {
      job->deadline = now + job->timeout;
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
  last_batch_ = now;
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
