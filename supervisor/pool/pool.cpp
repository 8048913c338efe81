// The pool's public face: start, submit, kill, free, drain, resize, and what it shows of its workers.

#include <parallelcode/parallelcode.hpp>

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <csignal>
#include <cstdio>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "pool_impl.hpp"
#include "statm.hpp"
#include "wake.hpp"
#include "worker_entry.hpp"

namespace parallelcode {

namespace detail {

namespace {

using namespace std::chrono_literals;

constexpr auto start_deadline = 30s;
constexpr auto longest_timeout = std::chrono::hours(24 * 365);
constexpr std::size_t big_payload = std::size_t{256} << 10;
constexpr std::size_t queued_bytes_ease = std::size_t{64} << 20;

void check(const options& o) {
  if (o.workers < 1 || o.workers > 4096) throw std::invalid_argument("parallelcode: workers must be 1 to 4096");
  if (o.concurrency < 1 || o.concurrency > 1024)
    throw std::invalid_argument("parallelcode: concurrency must be 1 to 1024");
  if (o.tick < 0us || o.tick > 1h) throw std::invalid_argument("parallelcode: tick must be 0 to 1 hour");
  if (o.ring_bytes < 4096 || o.ring_bytes > (std::size_t{1} << 30))
    throw std::invalid_argument("parallelcode: ring_bytes must be 4 KiB to 1 GiB");
  if (o.max_payload < 1 || o.max_payload > (std::uint64_t{1} << 40))
    throw std::invalid_argument("parallelcode: max_payload must be 1 byte to 1 TiB");
  if (o.job_timeout < 0ms || o.job_timeout > longest_timeout)
    throw std::invalid_argument("parallelcode: job_timeout must be 0 to 1 year");
  if (o.kill_grace < 0ms || o.kill_grace > 1h) throw std::invalid_argument("parallelcode: kill_grace must be 0 to 1 hour");
  if (o.max_workers != 0 && (o.max_workers < o.workers || o.max_workers > 4096))
    throw std::invalid_argument("parallelcode: max_workers must be 0 (workers) or workers to 4096");
}

// Blocks every signal on this thread while alive: a thread (and a process forked
// from it) started meanwhile starts with all of them blocked.
class signal_block {
 public:
  signal_block() {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, &old_);
  }
  ~signal_block() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  signal_block(const signal_block&) = delete;
  signal_block& operator=(const signal_block&) = delete;

 private:
  sigset_t old_;
};

}  // namespace

void add_to_epoll(int epoll, int fd) {
  epoll_event e{};
  e.events = EPOLLIN;
  e.data.fd = fd;
  if (::epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &e) != 0)
    throw std::system_error(errno, std::system_category(), "parallelcode: epoll_ctl");
}

void pool_impl::outcome::fire() noexcept {
  for (job_ptr& job : jobs) job->publish();
  jobs.clear();
  for (auto& notice : notices) notice();
  notices.clear();
}

pool_impl::~pool_impl() {
  try {
    free();
  } catch (...) {
  }
}

void pool_impl::start(const options& requested) {
  options o = requested;
  check(o);
  o.ring_bytes = std::bit_ceil(o.ring_bytes);
  if (o.max_workers == 0) o.max_workers = o.workers;
  watch_forks();

  std::unique_lock lock(mutex_);
  if (phase_ != phase::stopped)
    throw std::system_error(std::make_error_code(std::errc::connection_already_in_progress),
                            "parallelcode: the pool is already started");
  opts_ = o;
  // A slot may hold three processes at once: its current one, the replacement
  // starting for it, and a recycled or timed-out one still leaving. Plus spares
  // for processes that are slow to go.
  const unsigned channels = 3 * o.max_workers + 2;
  shm_ = region(channels, o.ring_bytes);
  doorbell_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!doorbell_) throw std::system_error(errno, std::system_category(), "parallelcode: eventfd");
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) throw std::system_error(errno, std::system_category(), "parallelcode: epoll_create1");
  add_to_epoll(epoll_.get(), doorbell_.get());
  slots_.clear();
  order_.clear();
  for (unsigned i = 0; i < o.workers; ++i) {
    slots_.emplace_back().id = static_cast<int>(i);
    order_.push_back(static_cast<int>(i));
  }
  by_channel_.assign(channels, nullptr);
  queue_.clear();
  to_replace_.clear();
  replacing_ = -1;
  timed_jobs_ = 0;
  stats_ = {};
  last_busy_ = clock::now();
  start_failure_ = nullptr;
  broken_.clear();
  last_death_.clear();
  link_.reset();
  fork_generation_.store(fork_generation(), std::memory_order_relaxed);
  phase_ = phase::starting;
  inbox_.open();
  {
    signal_block block;  // the host's signals are the host's: none reaches our thread or processes
    thread_ = std::make_unique<std::thread>([this] {
      serve_as_pool_thread(this);  // a callback there waiting for one of our jobs would wait forever
      run();
    });
  }

  const bool ready = changed_.wait_for(lock, start_deadline, [&] {
    return phase_ != phase::starting || start_failure_ || !broken_.empty() ||
           std::all_of(slots_.begin(), slots_.end(), [](const worker_slot& s) {
             return s.current && s.current->state == process::phase::ready;
           });
  });
  if (phase_ != phase::starting)  // another thread called free() meanwhile
    throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                            "parallelcode: the pool was freed while it started");
  if (ready && !start_failure_ && broken_.empty()) {
    phase_ = phase::running;
    return;
  }
  std::exception_ptr failure = start_failure_;
  const std::string why = !broken_.empty() ? broken_ : "the workers were not ready within 30 s";
  lock.unlock();
  free();
  if (failure) std::rethrow_exception(failure);
  throw std::system_error(std::make_error_code(std::errc::timed_out), "parallelcode: cannot start: " + why);
}

std::string pool_impl::refusal_locked() const {
  if (!broken_.empty()) return broken_;
  if (phase_ == phase::draining) return "parallelcode: the pool is draining";
  if (phase_ != phase::running && phase_ != phase::starting) return "parallelcode: the pool is not running";
  return {};
}

void pool_impl::submit(job_ptr job, const job_options& o) {
  outcome out;
  job->owner = this;
  if (inherited()) {
    job->fail(job_cancelled("parallelcode: this process is a fork of the pool's process: submit from the original"));
    out.jobs.push_back(std::move(job));
    out.fire();
    return;
  }
  job->id = next_id_.fetch_add(1, std::memory_order_relaxed) + 1;
  job->timeout = o.timeout.value_or(job_state_base::pool_default_timeout);
  job->retries = o.retries;
  job->queued_at = clock::now();
  // On a machine with fewer cores than busy threads, a host that copies big
  // payloads into the queue faster than they go out takes the CPU from the
  // threads that send and run them, and copies into ever fresh memory: with
  // 64 MiB already waiting it lets them run a little first. It never blocks.
  for (int i = 0; i < 8 && job->payload.size() >= big_payload && queue_.bytes() > queued_bytes_ease; ++i)
    std::this_thread::yield();
  // The lock's holder (the pool's thread, reading a batch of results) may keep it
  // a while: a submitter that finds it taken leaves the job in the inbox instead
  // of waiting, and wakes the pool's thread in case it sleeps.
  if (!mutex_.try_lock()) {
    if (inbox_.push(job, [&] { wake_eventfd_sleeper(shm_.supervisor_sleeping(), doorbell_.get()); })) return;
    mutex_.lock();  // the pool is not running: refused below
  }
  {
    std::lock_guard lock(mutex_, std::adopt_lock);
    take_inbox_locked(out);  // submitted before this one
    accept_locked(std::move(job), out);
    if (opts_.tick == std::chrono::microseconds::zero() && !queue_.empty()) dispatch(out);
  }
  out.fire();
}

void pool_impl::accept_locked(job_ptr job, outcome& out) {
  if (job->claim.load() == job_state_base::cancelled) {  // cancel() ended it in the inbox
    ++stats_.submitted;
    ++stats_.failed;
    return;
  }
  if (std::string why = refusal_locked(); !why.empty()) {
    job->queued_at = {};  // never queued
    job->fail(job_cancelled(why));
    out.jobs.push_back(std::move(job));
    return;
  }
  ++stats_.submitted;
  if (job->payload.size() > opts_.max_payload) {
    job->queued_at = {};
    job->fail(payload_error("parallelcode: the job's data is " + std::to_string(job->payload.size()) +
                            " bytes encoded, over max_payload (" + std::to_string(opts_.max_payload) + ")"));
    out.jobs.push_back(std::move(job));
    ++stats_.failed;
    return;
  }
  // A year is as good as none, and keeps now() + timeout far from overflowing.
  if (job->timeout == job_state_base::pool_default_timeout) job->timeout = opts_.job_timeout;
  job->timeout = std::clamp(job->timeout, std::chrono::milliseconds::zero(), std::chrono::milliseconds(longest_timeout));
  const bool timed = job->timeout > std::chrono::milliseconds::zero();
  queue_.push_back(pool_job(std::move(job)));
  // The pool's thread may sleep past the new deadline, or past the next tick.
  if (timed || (opts_.tick > std::chrono::microseconds::zero() && queue_.size() == 1))
    wake_eventfd_sleeper(shm_.supervisor_sleeping(), doorbell_.get());
}

bool pool_impl::take_inbox_locked(outcome& out) {
  return inbox_.take([&](job_ptr job) { accept_locked(std::move(job), out); });
}

bool pool_impl::kill(pid_t pid) {
  if (pid <= 0 || inherited()) return false;
  std::lock_guard lock(mutex_);
  if (phase_ == phase::stopped) return false;
  process* found = nullptr;
  for_each_process([&](worker_slot&, process& p) {
    if (p.proc.pid() == pid && p.proc.watched()) found = &p;
  });
  return found && found->proc.kill();
}

std::vector<worker_info> pool_impl::workers() const {
  if (inherited()) return {};
  std::lock_guard lock(mutex_);
  std::vector<worker_info> out;
  out.reserve(order_.size());
  for (int id : order_) {
    out.push_back(info(slots_[static_cast<std::size_t>(id)]));
    if (out.back().pid) out.back().rss = resident_bytes_of(out.back().pid);  // fresh: this is no hot path
  }
  return out;
}

std::size_t pool_impl::running_slots() const {
  if (inherited()) return 1;
  std::lock_guard lock(mutex_);
  return std::max<std::size_t>(1, order_.size()) * opts_.concurrency;
}

pool_stats pool_impl::stats() const {
  if (inherited()) return {};
  std::lock_guard lock(mutex_);
  pool_stats s = stats_;
  s.queued = queue_.size();
  return s;
}

void pool_impl::free() {
  // A forked copy: its lock may have been held at the fork, its thread and
  // processes are the original's. Touch nothing.
  if (inherited()) return;
  std::unique_lock lock(mutex_);
  if (phase_ == phase::stopped) return;
  if (phase_ == phase::stopping) {
    changed_.wait(lock, [&] { return phase_ == phase::stopped; });
    return;
  }
  if (thread_ && std::this_thread::get_id() == thread_->get_id())
    throw std::system_error(std::make_error_code(std::errc::resource_deadlock_would_occur),
                            "parallelcode: free() from a callback on the pool's thread would wait for itself");
  phase_ = phase::stopping;
  inbox_.close();
  ::eventfd_write(doorbell_.get(), 1);
  lock.unlock();
  if (thread_) thread_->join();
  lock.lock();
  outcome out;
  release_locked(out);
  lock.unlock();
  out.fire();
}

void pool_impl::release_locked(outcome& out) {
  take_inbox_locked(out);  // left by submitters the pool's thread no longer saw: refused
  thread_.reset();
  trim_buffer_cache();
  slots_.clear();
  order_.clear();
  by_channel_.clear();
  epoll_.reset();
  shm_ = region();
  doorbell_.reset();
  phase_ = phase::stopped;
  changed_.notify_all();
}

bool pool_impl::end_from_own_thread() noexcept {
  std::lock_guard lock(mutex_);
  if (!thread_ || std::this_thread::get_id() != thread_->get_id()) return false;
  // Another thread's free() joins us and touches the pool after: it stays, unfreed, rather than crash that thread.
  if (phase_ == phase::stopping) return true;
  // It cannot join itself: it stops as for free(), and once its loop ends it finishes the free alone.
  phase_ = phase::stopping;
  inbox_.close();
  ::eventfd_write(doorbell_.get(), 1);
  orphaned_ = true;
  thread_->detach();
  changed_.notify_all();
  return true;
}

bool pool_impl::drain(clock::duration timeout) {
  if (inherited()) return false;
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return phase_ != phase::starting; });  // start() fails or succeeds within its deadline
  if (phase_ != phase::running) return phase_ == phase::stopped;
  if (thread_ && std::this_thread::get_id() == thread_->get_id())
    throw std::system_error(std::make_error_code(std::errc::resource_deadlock_would_occur),
                            "parallelcode: drain() from a callback on the pool's thread would wait for itself");
  // A job() is refused at once or runs: from here on submit() takes the lock and
  // sees the drain; what got into the inbox before is queued now, and runs.
  inbox_.close();
  outcome out;
  take_inbox_locked(out);
  phase_ = phase::draining;
  ::eventfd_write(doorbell_.get(), 1);
  if (!out.jobs.empty()) {
    lock.unlock();
    out.fire();
    lock.lock();
  }
  auto idle = [&] {
    bool busy = !queue_.empty() || !inbox_.empty();
    for_each_process([&](const worker_slot&, const process& p) { busy |= !p.in_flight.empty() || !p.ahead.empty(); });
    return !busy;
  };
  const bool done = changed_.wait_for(lock, std::min<clock::duration>(timeout, 24h * 365), idle);
  lock.unlock();
  free();
  return done;
}

void pool_impl::resize(unsigned n) {
  if (inherited()) return;
  std::lock_guard lock(mutex_);
  if (phase_ != phase::running) throw std::invalid_argument("parallelcode: resize() needs a running pool");
  if (n < 1 || n > opts_.max_workers)
    throw std::invalid_argument("parallelcode: a pool started with max_workers = " + std::to_string(opts_.max_workers) +
                                " cannot have " + std::to_string(n) + " workers");
  for (unsigned id = 0; id < n; ++id) {  // grow, or take back slots still leaving
    if (id == slots_.size()) slots_.emplace_back().id = static_cast<int>(id);
    worker_slot& slot = slots_[id];
    if (std::find(order_.begin(), order_.end(), slot.id) != order_.end()) continue;
    slot.retiring = false;
    order_.push_back(slot.id);
    spawn(slot);
  }
  for (std::size_t id = n; id < slots_.size(); ++id) {  // shrink: the highest ids go
    worker_slot& slot = slots_[id];
    if (slot.retiring) continue;
    slot.retiring = true;
    slot.respawn_at.reset();
    order_.erase(std::remove(order_.begin(), order_.end(), slot.id), order_.end());
    if (slot.next) end_process(slot, *slot.next, exit_reason::stopped);
    if (slot.current) {
      slot.current->ending = true;
      slot.current->reason = exit_reason::stopped;
      slot.leaving.push_back(std::move(slot.current));
      retire_if_idle(*slot.leaving.back());
    }
  }
  forget_retired_slots();
  ::eventfd_write(doorbell_.get(), 1);
}

void pool_impl::replace_workers() {
  if (inherited()) return;
  std::lock_guard lock(mutex_);
  if (phase_ != phase::running) throw std::invalid_argument("parallelcode: replace_workers() needs a running pool");
  to_replace_.assign(order_.begin(), order_.end());
  if (replacing_ < 0) replace_next();
  ::eventfd_write(doorbell_.get(), 1);  // the pool's thread sends the spawn request
}

bool pool_impl::inherited() const noexcept {
  return fork_generation() != fork_generation_.load(std::memory_order_relaxed);
}

void pool_impl::on_worker_spawn(std::function<void(const worker_info&)> f) {
  if (inherited()) return;  // its lock may have been held at the fork
  std::lock_guard lock(mutex_);
  on_spawn_ = std::move(f);
}

void pool_impl::on_worker_exit(std::function<void(const worker_exit&)> f) {
  if (inherited()) return;
  std::lock_guard lock(mutex_);
  on_exit_ = std::move(f);
}

void pool_impl::on_crash_loop(std::function<void(const worker_info&, unsigned, std::chrono::milliseconds)> f) {
  if (inherited()) return;
  std::lock_guard lock(mutex_);
  on_crash_loop_ = std::move(f);
}

void pool_impl::on_fork_server_lost(std::function<void(pid_t)> f) {
  if (inherited()) return;
  std::lock_guard lock(mutex_);
  on_fork_server_lost_ = std::move(f);
}

worker_info pool_impl::info(const worker_slot& slot, clock::time_point now) const {
  worker_info w;
  if (slot.current) {
    w = info(slot, *slot.current, now);
  } else {
    w.id = slot.id;
    w.done = slot.done;
    w.respawns = slot.respawns;
    w.recycled = slot.recycled;
    w.state = slot.backoff ? worker_state::backoff : worker_state::starting;
  }
  w.running = 0;
  auto count = [&](const process* p) { w.running += p ? static_cast<unsigned>(p->in_flight.size()) : 0; };
  count(slot.current.get());
  for (const auto& p : slot.leaving) count(p.get());
  return w;
}

worker_info pool_impl::info(const worker_slot& slot, const process& p, clock::time_point now) const {
  worker_info w;
  w.id = slot.id;
  w.pid = p.proc.pid();
  w.state = p.state == process::phase::ready ? worker_state::ready : worker_state::starting;
  w.running = static_cast<unsigned>(p.in_flight.size());
  w.done = slot.done;
  w.respawns = slot.respawns;
  w.recycled = slot.recycled;
  w.rss = p.rss;
  w.uptime = now - p.spawned_at;
  return w;
}

void pool_impl::move_to_back(int id) {
  const auto it = std::find(order_.begin(), order_.end(), id);
  if (it != order_.end()) std::rotate(it, it + 1, order_.end());
}

}  // namespace detail

unsigned default_workers() noexcept { return std::max(1u, std::thread::hardware_concurrency()); }

pool::pool() : impl_(std::make_unique<detail::pool_impl>()) {}

pool::~pool() {
  // A forked copy of a running pool may hold state torn mid-update at the fork: leave it.
  if (impl_->inherited()) (void)impl_.release();
  // Destroyed from its own callback: its thread frees it and deletes it once the callback returns.
  else if (impl_->end_from_own_thread()) (void)impl_.release();
}

void pool::start(const options& opts) {
  // A forked copy of a running pool cannot be restarted in place: start afresh.
  if (impl_->inherited()) {
    (void)impl_.release();
    impl_ = std::make_unique<detail::pool_impl>();
  }
  impl_->start(opts);
}

void pool::submit(std::shared_ptr<detail::job_state_base> job, const job_options& opts) {
  impl_->submit(std::move(job), opts);
}
bool pool::kill(pid_t pid) { return impl_->kill(pid); }
std::vector<worker_info> pool::workers() const { return impl_->workers(); }
std::size_t pool::running_slots() const { return impl_->running_slots(); }
pool_stats pool::stats() const { return impl_->stats(); }
void pool::free() { impl_->free(); }
void pool::resize(unsigned n) { impl_->resize(n); }
void pool::replace_workers() { impl_->replace_workers(); }
bool pool::drain(std::chrono::steady_clock::duration timeout) { return impl_->drain(timeout); }
void pool::on_worker_spawn(std::function<void(const worker_info&)> f) { impl_->on_worker_spawn(std::move(f)); }
void pool::on_worker_exit(std::function<void(const worker_exit&)> f) { impl_->on_worker_exit(std::move(f)); }
void pool::on_fork_server_lost(std::function<void(pid_t)> f) { impl_->on_fork_server_lost(std::move(f)); }
void pool::on_crash_loop(std::function<void(const worker_info&, unsigned, std::chrono::milliseconds)> f) {
  impl_->on_crash_loop(std::move(f));
}

pool& default_pool() {
  static pool instance;
  return instance;
}

}  // namespace parallelcode
