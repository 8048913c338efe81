// The pool's thread and what it waits for: results, deaths, respawns, timeouts, recycling, ticks.

#include <parallelcode/parallelcode.hpp>

#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "backoff.hpp"
#include "pool_impl.hpp"
#include "wake.hpp"

namespace parallelcode::detail {

namespace {

using namespace std::chrono_literals;

constexpr auto spin_budget = 50us;
constexpr auto quick_run = 100us;          // a worker whose last job took less gets jobs handed ahead
constexpr auto fork_server_grace = 5s;
constexpr auto orphan_wait = 1s;           // for workers of a dead fork server to be gone
constexpr auto no_channel_retry = 1ms;
constexpr auto idle_wake = 1s;             // the pool's thread wakes at least this often
constexpr auto idle_trim = 1s;             // idle this long, the pool gives back cached payload buffers

// Resident memory gained since it became ready: pages it shares with the host
// from the fork are not its own doing.
std::size_t grown(const process& p) { return p.rss > p.rss_at_ready ? p.rss - p.rss_at_ready : 0; }




}  // namespace

void pool_impl::run() {
  ::pthread_setname_np(::pthread_self(), "pc-supervisor");
  outcome out;
  bool started;
  {
    std::lock_guard lock(mutex_);
    started = start_fork_server(out);
  }
  out.fire();
  if (started) serve();

  std::optional<fork_server> server;
  {
    std::lock_guard lock(mutex_);
    server = link_.release();
  }
  if (server) server->stop(fork_server_grace);  // it kills and reaps every worker first
  {
    std::lock_guard lock(mutex_);
    if (on_exit_) {
      for_each_process([&](worker_slot& slot, process& p) {
        if (!p.proc.pid()) return;
        const worker_exit e{info(slot, p), p.proc.pid(), SIGKILL, -1, exit_reason::stopped, clock::now() - p.spawned_at};
        out.notices.push_back([f = on_exit_, e] { f(e); });
      });
    }
    end_all("parallelcode: the pool was freed", out);
    for (auto& slot : slots_) {
      slot.current.reset();
      slot.next.reset();
      slot.leaving.clear();
    }
    std::fill(by_channel_.begin(), by_channel_.end(), nullptr);
    stats_.fork_server = 0;
  }
  out.fire();
  if (orphaned_) delete_orphaned();  // destroyed from a callback: nobody joins this thread
}

void pool_impl::delete_orphaned() noexcept {
  outcome out;
  {
    std::lock_guard lock(mutex_);
    release_locked(out);
  }
  out.fire();
  delete this;
}

void pool_impl::serve() {
  outcome out;
  for (;;) {
    bool busy;
    {
      std::lock_guard lock(mutex_);
      if (stopping()) return;
      busy = step(out);
      // resize() and replace_workers() fill channels from other threads: spin on a copy.
      watched_ = by_channel_;
    }
    out.fire();
    if (busy || spin_until([&] { return results_pending() || !inbox_.empty(); }, spin_budget)) continue;

    clock::duration timeout;
    {
      std::lock_guard lock(mutex_);
      // Say we sleep, then look once more: a worker that publishes after this sees it.
      shm_.supervisor_sleeping().store(1, std::memory_order_seq_cst);
      const auto now = clock::now();
      if (stopping() || has_work_locked(now)) {
        shm_.supervisor_sleeping().store(0, std::memory_order_relaxed);
        continue;
      }
      timeout = sleep_budget_locked(now);
      if (now - last_busy_ >= idle_trim) trim_buffer_cache();
    }
    const auto s = std::chrono::duration_cast<std::chrono::seconds>(timeout);
    const timespec ts{static_cast<time_t>(s.count()), static_cast<long>((timeout - s).count())};
    epoll_event got[4];
    if (::epoll_pwait2(epoll_.get(), got, 4, &ts, nullptr) < 0 && errno == ENOSYS)  // before Linux 5.11
      ::epoll_wait(epoll_.get(), got, 4,
                   static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(timeout).count()));
    shm_.supervisor_sleeping().store(0, std::memory_order_relaxed);
    link_.woke();
    eventfd_t count;
    ::eventfd_read(doorbell_.get(), &count);
  }
}

bool pool_impl::results_pending() const noexcept {
  return std::any_of(watched_.begin(), watched_.end(),
                     [](const process* p) { return p && p->has_results(); });
}

bool pool_impl::tick_waits_locked() const {
  if (queue_.empty() || opts_.tick == std::chrono::microseconds::zero()) return false;
  // With every worker full, a tick is no work: a result wakes us first.
  return std::any_of(slots_.begin(), slots_.end(), [&](const worker_slot& s) { return can_take(s); });
}

bool pool_impl::tick_due_locked(clock::time_point now) const {
  return now >= last_batch_ + opts_.tick && tick_waits_locked();
}

clock::time_point pool_impl::next_timer_locked() const {
  auto at = clock::time_point::max();
  for (const auto& slot : slots_)
    if (slot.respawn_at) at = std::min(at, *slot.respawn_at);
  at = std::min(at, link_.next_timer());
  at = std::min(at, next_steal_locked());
  for_each_process([&](const worker_slot&, const process& p) {
    at = std::min(at, p.proc.kill_due());
    if (timed_jobs_)
      for (const auto& job : p.in_flight)
        if (job->timeout > std::chrono::milliseconds::zero()) at = std::min(at, job.deadline);
  });
  return at;
}

bool pool_impl::has_work_locked(clock::time_point now) const {
  for (const process* p : by_channel_)
    if (p && (has_outbox_room(*p) || p->has_results())) return true;
  return !inbox_.empty() || claims_pending() || next_timer_locked() <= now || tick_due_locked(now);
}

clock::duration pool_impl::sleep_budget_locked(clock::time_point now) const {
  auto until = std::min(now + idle_wake, next_timer_locked());
  if (tick_waits_locked()) until = std::min(until, last_batch_ + opts_.tick);
  return std::max(until - now, clock::duration::zero());
}

bool pool_impl::step(outcome& out) {
  bool busy = false;
  auto now = clock::now();
  if (link_.reports_due(shm_.fork_server_reports().load(std::memory_order_acquire), now)) {
    while (link_.running()) {
      fs_report r{};
      unique_fd pidfd;
      const auto status = link_.receive(r, pidfd);
      if (status == fork_server::receive_status::nothing) break;
      busy = true;
      if (status == fork_server::receive_status::gone)
        fork_server_lost(out);
      else
        handle_report(r, std::move(pidfd), out);
    }
  } else if (link_.restart_due(now)) {
    start_fork_server(out);
    busy = true;
  }
  link_.flush();
  for (process* p : by_channel_) {
    if (!p || !p->proc.pid()) continue;
    worker_slot& slot = slots_[static_cast<std::size_t>(p->slot)];
    if (!p->ahead.empty()) notice_claimed(slot, *p, out);
    busy |= read_results(slot, *p, out);
  }
  now = clock::now();
  for (auto& slot : slots_) {
    if (slot.respawn_at && now >= *slot.respawn_at) {
      slot.respawn_at.reset();
      slot.backoff = false;
      spawn(slot);
      busy = true;
    }
  }
  busy |= check_timeouts(now, out);
  busy |= escalate_kills(now);
  busy |= steal_from_stuck(now);
  for (process* p : by_channel_)
    if (p && p->outbox) busy |= flush(*p);
  if (const auto seen = cancellations(); seen != cancellations_seen_) {
    cancellations_seen_ = seen;  // drop cancelled jobs now: they may hold big payloads
    stats_.failed += static_cast<std::uint64_t>(
        queue_.erase_if([](const pool_job& j) { return j->claim.load() == job_state_base::cancelled; }));
  }
  busy |= take_inbox_locked(out);
  if (!queue_.empty() && (opts_.tick == std::chrono::microseconds::zero() || now >= last_batch_ + opts_.tick))
    busy |= dispatch(out);
  busy |= link_.take_requests_added();
  if (busy) last_busy_ = now;
  if (phase_ == phase::draining && busy) changed_.notify_all();
  return busy;
}

bool pool_impl::start_fork_server(outcome& out) {
  try {
    link_.start({&shm_, opts_.concurrency, opts_.max_payload, doorbell_.get(), opts_.worker_init, opts_.max_worker_rss},
                epoll_.get());
  } catch (const std::system_error& e) {
    if (phase_ == phase::starting) {
      start_failure_ = std::current_exception();
      changed_.notify_all();
      return false;
    }
    if (!link_.retry_later()) {
      broken_ = std::string("parallelcode: cannot fork a new fork server: ") + e.what();
      end_all(broken_, out);
      changed_.notify_all();
      return false;
    }
    return false;
  }
  stats_.fork_server = link_.pid();
  for (auto& slot : slots_)
    if (!slot.respawn_at) spawn(slot);
  return true;
}

void pool_impl::fork_server_lost(outcome& out) {
  if (on_fork_server_lost_) out.notices.push_back([f = on_fork_server_lost_, pid = link_.pid()] { f(pid); });
  const auto delay = link_.lost();
  stats_.fork_server = 0;
  ++stats_.fork_server_restarts;
  // Its workers die with it (parent-death signal). Make sure, and wait until each
  // is gone: its channel must not be written by it once a new process has it.
  for_each_process([](worker_slot&, process& p) { p.proc.kill(); });
  const auto until = clock::now() + orphan_wait;
  for_each_process([&](worker_slot&, process& p) { p.proc.wait_exit(until); });
  for (auto& slot : slots_) {
    std::vector<std::unique_ptr<process>> all;
    for (auto* owner : {&slot.current, &slot.next})
      if (*owner) all.push_back(std::move(*owner));
    for (auto& p : slot.leaving) all.push_back(std::move(p));
    slot.leaving.clear();
    if (std::any_of(all.begin(), all.end(), [](const auto& p) { return p->proc.pid() && !p->ending; })) {
      ++slot.respawns;
      ++stats_.respawns;
    }
    for (auto& p : all) {
      if (p->proc.pid()) read_results(slot, *p, out);
      lose_jobs(slot, *p, SIGKILL, -1, out);
      shm_.reset(p->channel);
      by_channel_[p->channel] = nullptr;
      if (p->proc.pid() && on_exit_) {
        // Killed by their parent's death signal: died, and respawned with the new fork server.
        const worker_exit e{info(slot), p->proc.pid(), SIGKILL, -1, exit_reason::died, clock::now() - p->spawned_at};
        out.notices.push_back([f = on_exit_, e] { f(e); });
      }
    }
  }
  if (delay == 0ms) start_fork_server(out);
}

void pool_impl::handle_report(const fs_report& r, unique_fd pidfd, outcome& out) {
  if (r.channel >= by_channel_.size() || !by_channel_[r.channel]) return;
  process& p = *by_channel_[r.channel];
  worker_slot& slot = slots_[static_cast<std::size_t>(p.slot)];
  switch (r.event) {
    case fs_event::spawned:
      if (p.state != process::phase::forking) return;
      p.proc = worker_process(r.pid, std::move(pidfd));
      p.state = process::phase::starting;
      ++stats_.forks;
      if (!p.proc.watched()) {
        // Out of fds, the kernel dropped it: a worker we cannot signal is no worker.
        // Its parent kills it; the exit that follows is a death at start-up.
        p.unwatched = true;
        link_.request({fs_command::kill, r.id, r.channel});
      }
      return;
    case fs_event::exited:
      if (p.proc.pid() == r.pid) process_exited(slot, p, r.code, r.status, out);
      return;
    case fs_event::spawn_failed: {
      // Never forked: no exit to report, but a fork that keeps failing backs off like a crash loop.
      last_death_ = std::string("could not be forked: ") + std::strerror(r.status);
      auto never = std::move(&p == slot.current.get() ? slot.current : slot.next);
      by_channel_[never->channel] = nullptr;
      ++slot.young_deaths;
      if (!slot.current) schedule_respawn(slot, out);
      return;
    }
  }
}

bool pool_impl::read_results(worker_slot& slot, process& p, outcome& out) {
  if (p.corrupt) return false;
  bool any = false;
  for (;;) {
    bool whole = false;
    try {
      whole = p.reader.poll(p.results);
    } catch (const protocol_error&) {
      // A worker that writes garbage is broken: its jobs fail when it is reaped.
      p.corrupt = true;
      p.proc.kill();
      return true;
    }
    if (!whole) break;
    handle_frame(slot, p, p.reader, out);
    p.reader.next();
    p.reader.trim();
    any = true;
  }
  if (p.results.release()) {
    wake_futex_sleeper(p.results.control().producer_waiting);  // a worker streaming a big result
    any = true;
  }
  return any;
}

void pool_impl::handle_frame(worker_slot& slot, process& p, const frame_reader& frame, outcome& out) {
  const frame_header& h = frame.header();
  if (h.type == frame_type::ready) {
    if (p.unwatched) return;  // being killed: it never serves
    p.rss = p.rss_at_ready = h.rss;
    became_ready(slot, p, out);
    return;
  }
  if (h.type == frame_type::job) return;
  // Among the jobs wholly sent: one still in the outbox cannot have ended.
  auto find = [&] {
    const auto sent = p.in_flight.begin() + static_cast<std::ptrdiff_t>(std::min(p.written(), p.in_flight.size()));
    const auto it = std::find_if(p.in_flight.begin(), sent, [&](const pool_job& j) { return j->id == h.job; });
    return it == sent ? p.in_flight.end() : it;
  };
  auto it = find();
  if (it == p.in_flight.end() && !p.ahead.empty()) {
    notice_claimed(slot, p, out);  // an ahead job done before the pool saw it start
    it = find();
  }
  if (it == p.in_flight.end()) return;  // it timed out meanwhile
  pool_job job = std::move(*it);
  p.in_flight.erase(it);
  const auto now = clock::now();
  p.quick = now - job.began < quick_run;
  if (job->timeout > 0ms) --timed_jobs_;
  ++p.done;
  ++slot.done;
  if (h.rss) p.rss = h.rss;

  bool ok = false;
  if (h.type == frame_type::result) {
    ok = job->finish(frame.payload(), frame.payload_size(), now);
  } else if (h.type == frame_type::failed) {
    std::pair<std::string, std::string> what{"an exception", ""};
    try {
      what = decode<std::pair<std::string, std::string>>(frame.payload(), frame.payload_size());
    } catch (const codec_error&) {
    }
    job->fail(job_failed(std::move(what.first), std::move(what.second)));
  } else {
    std::string what = "parallelcode: the job's data or result could not be coded";
    try {
      what = "parallelcode: " + decode<std::string>(frame.payload(), frame.payload_size());
    } catch (const codec_error&) {
    }
    job->fail(payload_error(what));
  }
  ++(ok ? stats_.completed : stats_.failed);
  out.jobs.push_back(std::move(job.job));
  job_ended(slot, p);
}

void pool_impl::job_ended(worker_slot& slot, process& p) {
  if (&p != slot.current.get()) {
    retire_if_idle(p);
    return;
  }
  move_to_back(slot.id);
  check_limits(slot, p);
}

void pool_impl::became_ready(worker_slot& slot, process& p, outcome& out) {
  p.state = process::phase::ready;
  if (&p == slot.next.get())
    promote(slot);
  else if (&p == slot.current.get())
    check_limits(slot, p);  // a replacement to keep ready
  changed_.notify_all();
  if (on_spawn_) out.notices.push_back([f = on_spawn_, w = info(slot, p)] { f(w); });
}

// Recycling: when max_jobs_per_worker is set a replacement is kept ready all the
// time; for max_worker_rss one starts at 90% of the limit. Over the limit, the
// process keeps serving until its replacement is ready, then takes no new job and
// leaves when its running ones are done: the slot never waits for a process.
void pool_impl::check_limits(worker_slot& slot, process& p) {
  if (&p != slot.current.get() || p.state != process::phase::ready || p.ending || slot.retiring) return;
  if ((p.max_jobs && p.done >= p.max_jobs) || (opts_.max_worker_rss && grown(p) > opts_.max_worker_rss))
    p.over_limit = true;
  if (wants_next(slot) && !slot.respawn_at) spawn(slot);
  promote(slot);
}

bool pool_impl::wants_next(const worker_slot& slot) const {
  const process* p = slot.current.get();
  if (!p || slot.next || p->state != process::phase::ready || p->ending) return false;
  const bool rss_near = opts_.max_worker_rss && grown(*p) >= opts_.max_worker_rss / 10 * 9;
  return p->max_jobs || rss_near || p->over_limit;
}

void pool_impl::promote(worker_slot& slot) {
  // One process leaving at a time: a recycled one stuck in a job (no timeout) must
  // not make the slot pile up processes; the current one serves past its limit meanwhile.
  if (!slot.next || slot.next->state != process::phase::ready || !slot.current || !slot.current->over_limit ||
      !slot.leaving.empty())
    return;
  std::unique_ptr<process> old = std::move(slot.current);
  slot.current = std::move(slot.next);
  old->ending = true;
  old->reason = exit_reason::recycled;
  ++slot.recycled;
  ++stats_.recycled;
  slot.leaving.push_back(std::move(old));
  retire_if_idle(*slot.leaving.back());  // or when its last job ends
  check_limits(slot, *slot.current);
  if (slot.id == replacing_) replace_next();
}

void pool_impl::replace_next() {
  replacing_ = -1;
  while (!to_replace_.empty()) {
    worker_slot& slot = slots_[static_cast<std::size_t>(to_replace_.front())];
    to_replace_.pop_front();
    if (slot.retiring || !slot.current || slot.current->state != process::phase::ready) continue;  // new anyway
    replacing_ = slot.id;
    slot.current->over_limit = true;  // replaced like a recycled one: its successor first
    check_limits(slot, *slot.current);
    return;
  }
}

void pool_impl::forget_retired_slots() {
  while (!slots_.empty()) {
    const worker_slot& last = slots_.back();
    if (!last.retiring || last.current || last.next || !last.leaving.empty()) return;
    slots_.pop_back();
  }
}

void pool_impl::spawn(worker_slot& slot) {
  if (slot.retiring || (slot.current && !wants_next(slot))) return;  // nothing missing
  if (!link_.running() || stopping()) return;  // a new fork server spawns every slot
  const auto free_channel = std::find(by_channel_.begin(), by_channel_.end(), nullptr);
  if (free_channel == by_channel_.end()) {  // every channel busy with leaving processes
    slot.respawn_at = clock::now() + no_channel_retry;
    return;
  }
  const auto channel = static_cast<unsigned>(free_channel - by_channel_.begin());
  auto p = std::make_unique<process>(channel, shm_, frame_limit(opts_.max_payload));
  p->slot = slot.id;
  if (opts_.max_jobs_per_worker) {
    const unsigned jitter = opts_.max_jobs_per_worker / 10;
    p->max_jobs = opts_.max_jobs_per_worker + (jitter ? jitter_() % (jitter + 1) : 0);
  }
  by_channel_[channel] = p.get();
  (slot.current ? slot.next : slot.current) = std::move(p);
  // Sent at the start of the next step, once this one's events are published: a
  // fork server woken now would take the CPU from the pool's thread before it
  // tells the jobs of the worker that died.
  link_.request({fs_command::spawn, slot.id, channel});
}

void pool_impl::schedule_respawn(worker_slot& slot, outcome& out) {
  const auto delay = backoff_delay(slot.young_deaths);
  if (delay == 0ms) {
    spawn(slot);
    return;
  }
  slot.respawn_at = clock::now() + delay;
  slot.backoff = true;
  if (on_crash_loop_)
    out.notices.push_back([f = on_crash_loop_, w = info(slot), n = slot.young_deaths, delay] { f(w, n, delay); });
}

void pool_impl::process_exited(worker_slot& slot, process& p, int code, int status, outcome& out) {
  if (p.proc.pid()) read_results(slot, p, out);  // what it wrote before it died still counts
  const int signal = (code == CLD_KILLED || code == CLD_DUMPED) ? status : 0;
  const int exit_status = code == CLD_EXITED ? status : -1;
  lose_jobs(slot, p, signal, exit_status, out);

  const auto now = clock::now();
  // Ours only if we had signalled it; a leaving process killed from outside died.
  const exit_reason reason = p.proc.terminating() ? p.reason : exit_reason::died;
  const bool serving = &p == slot.current.get() || &p == slot.next.get();
  const bool died_young = now - p.spawned_at < young && !p.handed_job;
  const pid_t pid = p.proc.pid();
  const auto uptime = now - p.spawned_at;

  // Take it out of its slot and free its channel for the next process.
  std::unique_ptr<process> gone;
  if (&p == slot.current.get()) {
    gone = std::move(slot.current);
    slot.current = std::move(slot.next);  // a replacement on its way takes over
  } else if (&p == slot.next.get()) {
    gone = std::move(slot.next);
  } else {
    const auto it = std::find_if(slot.leaving.begin(), slot.leaving.end(), [&](const auto& l) { return l.get() == &p; });
    gone = std::move(*it);
    slot.leaving.erase(it);
  }
  shm_.reset(gone->channel);
  by_channel_[gone->channel] = nullptr;

  if (serving && reason == exit_reason::died) {
    slot.young_deaths = died_young ? slot.young_deaths + 1 : 0;
    ++slot.respawns;
    ++stats_.respawns;
    last_death_ = gone->unwatched ? "was killed: its pidfd was lost, the pool's process is out of file descriptors"
                                  : describe_exit(signal, exit_status);
    if (phase_ == phase::starting && slot.young_deaths >= 3) {
      start_failure_ = std::make_exception_ptr(std::system_error(
          std::make_error_code(std::errc::no_child_process),
          "parallelcode: cannot start: workers die at start-up (the last one " + last_death_ + ")"));
      changed_.notify_all();
    }
    if (!stopping() && !slot.current && !slot.retiring) schedule_respawn(slot, out);
  }
  if (!stopping() && slot.current) check_limits(slot, *slot.current);  // a swap waiting for the leaver to go
  if (slot.id == replacing_ && !slot.next) replace_next();        // it died instead: its successor is new anyway
  if (on_exit_) {
    const worker_exit e{info(slot), pid, signal, exit_status, reason, uptime};
    out.notices.push_back([f = on_exit_, e] { f(e); });
  }
  forget_retired_slots();
}

void pool_impl::lose_jobs(worker_slot& slot, process& p, int signal, int exit_status, outcome& out) {
  // Ahead jobs it took were running: they start (on_start, attempt, worker) before
  // they fail or go round again. Those it never took go back to the front of the
  // queue, untouched.
  notice_claimed(slot, p, out);
  steal_back(p);
  while (!p.ahead.empty()) {
    begin_run(slot, p, std::move(p.ahead.front()), clock::now(), out);
    p.ahead.pop_front();
  }
  // A retry is queued again at the back: run at once it would land in the turmoil
  // of the respawn (a fork, a cold process, busy CPUs) and be likelier to die again.
  for (pool_job& job : p.in_flight) {
    if (job->timeout > 0ms) --timed_jobs_;
    if (job->retries > 0 && !stopping() && broken_.empty()) {
      --job->retries;
      job.avoid = p.slot;
      job->claim.store(job_state_base::queued);  // queued again: cancellable again
      ++stats_.retried;
      queue_.push_back(std::move(job));
    } else {
      job->fail(worker_lost(p.proc.pid(), signal, exit_status));
      ++stats_.failed;
      out.jobs.push_back(std::move(job.job));
    }
  }
  p.in_flight.clear();
  p.outbox = 0;
  p.outbox_sent = 0;
}

void pool_impl::end_process(worker_slot& slot, process& p, exit_reason why) {
  if (p.proc.terminating()) return;  // already on its way out
  p.ending = true;
  p.reason = why;
  if (&p == slot.current.get()) {
    slot.leaving.push_back(std::move(slot.current));
    slot.current = std::move(slot.next);
  }
  p.proc.terminate(opts_.kill_grace);
}

void pool_impl::retire_if_idle(process& p) {
  if (!p.ending || !p.in_flight.empty() || !p.ahead.empty()) return;
  p.proc.terminate(opts_.kill_grace);
}

bool pool_impl::check_timeouts(clock::time_point now, outcome& out) {
  if (timed_jobs_ == 0) return false;
  std::vector<std::pair<worker_slot*, process*>> overdue;
  for_each_process([&](worker_slot& slot, process& p) {
    bool late = false;
    // A job still in the outbox has not started its time (deadline max()).
    for (auto it = p.in_flight.begin(); it != p.in_flight.end();) {
      pool_job& job = *it;
      if (job->timeout == 0ms || now < job.deadline) {
        ++it;
        continue;
      }
      --timed_jobs_;
      job->fail(job_timeout(job->timeout, p.proc.pid()));
      ++stats_.failed;
      out.jobs.push_back(std::move(job.job));
      it = p.in_flight.erase(it);
      late = true;
    }
    if (late) overdue.emplace_back(&slot, &p);
  });
  // Its other jobs fail (or are retried) with worker_lost when it is gone.
  for (auto [slot, p] : overdue) {
    const bool serving = p == slot->current.get();
    end_process(*slot, *p, exit_reason::timed_out);
    if (serving) {
      ++slot->respawns;
      ++stats_.respawns;
    }
    if (!slot->current && !slot->respawn_at) spawn(*slot);
  }
  return !overdue.empty();
}

bool pool_impl::escalate_kills(clock::time_point now) {
  bool any = false;
  for_each_process([&](worker_slot&, process& p) { any |= p.proc.escalate(now); });
  return any;
}

void pool_impl::end_all(const std::string& why, outcome& out) {
  auto cancel = [&](pool_job& job) {
    job->fail(job_cancelled(why));
    out.jobs.push_back(std::move(job.job));
    ++stats_.failed;
  };
  for_each_process([&](worker_slot&, process& p) {
    std::for_each(p.in_flight.begin(), p.in_flight.end(), cancel);
    std::for_each(p.ahead.begin(), p.ahead.end(), cancel);
    p.in_flight.clear();
    p.ahead.clear();
    p.outbox = 0;
    p.outbox_sent = 0;
  });
  std::for_each(queue_.begin(), queue_.end(), cancel);
  queue_.clear();
  timed_jobs_ = 0;
}

}  // namespace parallelcode::detail
