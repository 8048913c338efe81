// The pool: the public API, and the pool's own thread, which forks the fork
// server, reads results, respawns the dead and drains the queue.

#include <parallelcode/parallelcode.hpp>

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include "pidfd.hpp"
#include <sys/wait.h>

#include <algorithm>
#include <bit>
#include <csignal>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

#include "pool_impl.hpp"
#include "wake.hpp"
#include "worker_entry.hpp"

namespace parallelcode {

namespace detail {

namespace {

using namespace std::chrono_literals;

constexpr auto spin_budget = 20us;
constexpr auto start_deadline = 30s;
constexpr auto respawn_retry = 100ms;
constexpr auto idle_sleep = 1s;  // the pool's thread wakes at least this often
constexpr auto fork_server_grace = 5s;

void check(const options& o) {
  if (o.workers < 1 || o.workers > 4096) throw std::invalid_argument("parallelcode: workers must be 1 to 4096");
  if (o.concurrency < 1 || o.concurrency > 1024)
    throw std::invalid_argument("parallelcode: concurrency must be 1 to 1024");
  if (o.tick < 0us || o.tick > 1h) throw std::invalid_argument("parallelcode: tick must be 0 to 1 hour");
  if (o.ring_bytes < 4096 || o.ring_bytes > (std::size_t{1} << 30))
    throw std::invalid_argument("parallelcode: ring_bytes must be 4 KiB to 1 GiB");
  if (o.max_payload < 1 || o.max_payload > (std::uint64_t{1} << 40))
    throw std::invalid_argument("parallelcode: max_payload must be 1 byte to 1 TiB");
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

// The room write_frame needs to make progress with the outbox's first frame.
std::uint64_t frame_room_needed(const worker_slot& w) {
  if (w.outbox_sent > 0) return 1;
  const std::uint64_t total = frame_bytes(w.outbox.front()->payload.size());
  return total <= w.jobs.capacity() ? total : sizeof(frame_header);
}

}  // namespace

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
  watch_forks();

  std::unique_lock lock(mutex_);
  if (phase_ != phase::stopped)
    throw std::system_error(std::make_error_code(std::errc::connection_already_in_progress),
                            "parallelcode: the pool is already started");
  opts_ = o;
  shm_ = region(o.workers, o.ring_bytes);
  doorbell_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!doorbell_) throw std::system_error(errno, std::system_category(), "parallelcode: eventfd");
  slots_.clear();
  order_.clear();
  for (unsigned i = 0; i < o.workers; ++i) {
    auto w = std::make_unique<worker_slot>(frame_limit(o.max_payload));
    w->id = static_cast<int>(i);
    w->channel = i;
    w->jobs = ring_writer(shm_.in(i));
    w->results = ring_reader(shm_.out(i));
    slots_.push_back(std::move(w));
    order_.push_back(static_cast<int>(i));
  }
  queue_.clear();
  stats_ = {};
  stop_ = false;
  start_failure_ = nullptr;
  broken_.clear();
  fork_generation_.store(fork_generation(), std::memory_order_relaxed);
  phase_ = phase::starting;
  {
    signal_block block;  // the host's signals are the host's: none reaches our thread or processes
    thread_ = std::make_unique<std::thread>(&pool_impl::run, this);
  }

  const bool ready = changed_.wait_for(lock, start_deadline, [&] {
    return phase_ != phase::starting || start_failure_ || !broken_.empty() ||
           std::all_of(slots_.begin(), slots_.end(), [](const auto& w) { return w->state == worker_state::ready; });
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

void pool_impl::run() {
  ::pthread_setname_np(::pthread_self(), "pc-supervisor");
  std::optional<fork_server> server;
  try {
    server.emplace(fork_server_config{&shm_, opts_.concurrency, opts_.max_payload, doorbell_.get()});
  } catch (...) {
    std::lock_guard lock(mutex_);
    start_failure_ = std::current_exception();
    changed_.notify_all();
    return;
  }
  {
    std::lock_guard lock(mutex_);
    stats_.fork_server = server->pid();
    for (auto& w : slots_) spawn(*server, *w);
  }
  serve(*server);
  server->stop(fork_server_grace);  // it kills and reaps every worker first
  events ev;
  {
    std::lock_guard lock(mutex_);
    end_all("parallelcode: the pool was freed", ev);
    stats_.fork_server = 0;
  }
  publish(ev);
}

void pool_impl::serve(fork_server& server) {
  unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
  epoll_event e{};
  e.events = EPOLLIN;
  for (int fd : {doorbell_.get(), server.socket()}) {
    e.data.fd = fd;
    ::epoll_ctl(ep.get(), EPOLL_CTL_ADD, fd, &e);
  }
  events ev;
  for (;;) {
    bool busy;
    {
      std::lock_guard lock(mutex_);
      if (stop_) return;
      busy = step(server, ev);
    }
    publish(ev);
    if (busy || spin_until([&] { return results_pending(); }, spin_budget)) continue;

    std::chrono::nanoseconds timeout;
    {
      std::lock_guard lock(mutex_);
      // Say we sleep, then look once more: a worker that publishes after this sees it.
      shm_.supervisor_sleeping().store(1, std::memory_order_seq_cst);
      if (stop_ || has_work_locked()) {
        shm_.supervisor_sleeping().store(0, std::memory_order_relaxed);
        continue;
      }
      timeout = sleep_budget_locked();
    }
    const auto s = std::chrono::duration_cast<std::chrono::seconds>(timeout);
    const timespec ts{static_cast<time_t>(s.count()), static_cast<long>((timeout - s).count())};
    epoll_event got[4];
    if (::epoll_pwait2(ep.get(), got, 4, &ts, nullptr) < 0 && errno == ENOSYS)  // before Linux 5.11
      ::epoll_wait(ep.get(), got, 4, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(timeout).count()));
    shm_.supervisor_sleeping().store(0, std::memory_order_relaxed);
    eventfd_t count;
    ::eventfd_read(doorbell_.get(), &count);
  }
}

bool pool_impl::step(fork_server& server, events& ev) {
  bool busy = false;
  while (server.running()) {
    fs_report r{};
    unique_fd pidfd;
    const auto status = server.receive(r, pidfd);
    if (status == fork_server::receive_status::nothing) break;
    busy = true;
    if (status == fork_server::receive_status::gone) {
      fork_server_lost(server, ev);
      break;
    }
    handle_report(server, r, std::move(pidfd), ev);
  }
  const auto now = clock::now();
  for (auto& w : slots_) {
    if (w->alive) busy |= read_results(*w, ev);
    if (w->respawn_at && now >= *w->respawn_at) {
      w->respawn_at.reset();
      spawn(server, *w);
      busy = true;
    }
    if (!w->outbox.empty()) busy |= flush(*w);
  }
  if (!queue_.empty() && (opts_.tick == 0us || now >= last_batch_ + opts_.tick)) busy |= dispatch(ev);
  return busy;
}

bool pool_impl::handle_report(fork_server& server, const fs_report& r, unique_fd pidfd, events& ev) {
  if (r.id < 0 || static_cast<std::size_t>(r.id) >= slots_.size()) return false;
  worker_slot& w = *slots_[static_cast<std::size_t>(r.id)];
  switch (r.event) {
    case fs_event::spawned:
      w.pid = r.pid;
      w.pidfd = std::move(pidfd);
      w.alive = true;
      return true;
    case fs_event::exited:
      if (!w.alive || w.pid != r.pid) return false;
      worker_died(server, w, r.code, r.status, ev);
      return true;
    case fs_event::spawn_failed:
      w.respawn_at = clock::now() + respawn_retry;
      return true;
  }
  return false;
}

bool pool_impl::read_results(worker_slot& w, events& ev) {
  if (w.corrupt) return false;
  bool any = false;
  for (;;) {
    bool whole = false;
    try {
      whole = w.reader.poll(w.results);
    } catch (const protocol_error&) {
      // A worker that writes garbage is broken: its jobs fail when it is reaped.
      w.corrupt = true;
      ::pidfd_send_signal(w.pidfd.get(), SIGKILL, nullptr, 0);
      return true;
    }
    if (!whole) break;
    handle_frame(w, w.reader, ev);
    w.reader.next();
    w.reader.trim();
    any = true;
  }
  if (w.results.release()) {
    wake_futex_sleeper(w.results.control().producer_waiting);  // a worker streaming a big result
    any = true;
  }
  return any;
}

void pool_impl::handle_frame(worker_slot& w, const frame_reader& frame, events& ev) {
  const frame_header& h = frame.header();
  if (h.type == frame_type::ready) {
    w.state = worker_state::ready;
    changed_.notify_all();
    return;
  }
  const auto it = std::find_if(w.in_flight.begin(), w.in_flight.end(), [&](const job_ptr& j) { return j->id == h.job; });
  if (it == w.in_flight.end() || h.type == frame_type::job) return;
  job_ptr job = std::move(*it);
  w.in_flight.erase(it);
  --w.running;
  ++w.done;
  move_to_back(w.id);

  if (h.type == frame_type::result) {
    if (job->finish(frame.payload(), frame.payload_size()))
      ++stats_.completed;
    else
      ++stats_.failed;
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
  if (h.type != frame_type::result) ++stats_.failed;
  ev.push_back(std::move(job));
}

void pool_impl::worker_died(fork_server& server, worker_slot& w, int code, int status, events& ev) {
  read_results(w, ev);  // what it wrote before it died still counts
  const int signal = (code == CLD_KILLED || code == CLD_DUMPED) ? status : 0;
  const int exit_status = code == CLD_EXITED ? status : -1;
  for (job_ptr& job : w.in_flight) {
    job->fail(worker_lost(w.pid, signal, exit_status));
    ev.push_back(std::move(job));
    ++stats_.failed;
  }
  w.in_flight.clear();
  w.outbox.clear();
  w.outbox_sent = 0;
  w.running = 0;
  w.reader.next();
  w.reader.trim();
  // Nobody uses the rings now: empty them for the next process of this slot.
  shm_.reset(w.channel);
  w.jobs = ring_writer(shm_.in(w.channel));
  w.results = ring_reader(shm_.out(w.channel));
  w.alive = false;
  w.corrupt = false;
  w.pid = 0;
  w.pidfd.reset();
  w.state = worker_state::starting;
  ++w.respawns;
  ++stats_.respawns;
  move_to_back(w.id);
  if (!stop_) spawn(server, w);
}

void pool_impl::spawn(fork_server& server, worker_slot& w) {
  if (!server.request({fs_command::spawn, w.id, w.channel})) w.respawn_at = clock::now() + respawn_retry;
}

void pool_impl::fork_server_lost(fork_server& server, events& ev) {
  // Its workers die with it (parent-death signal); their statuses died with it too.
  server.stop(0ms);
  stats_.fork_server = 0;
  broken_ = "parallelcode: the pool's fork server died";
  for (auto& w : slots_) {
    if (w->pidfd) ::pidfd_send_signal(w->pidfd.get(), SIGKILL, nullptr, 0);
    for (job_ptr& job : w->in_flight) {
      job->fail(worker_lost(w->pid, SIGKILL, -1));
      ev.push_back(std::move(job));
      ++stats_.failed;
    }
    w->in_flight.clear();
    w->outbox.clear();
    w->running = 0;
    w->alive = false;
    w->pid = 0;
    w->pidfd.reset();
    w->state = worker_state::starting;
  }
  end_all(broken_, ev);
  changed_.notify_all();
}

bool pool_impl::dispatch(events& ev) {
  bool any = false;
  while (!queue_.empty()) {
    const auto it = std::find_if(order_.begin(), order_.end(),
                                 [&](int id) { return can_take(*slots_[static_cast<std::size_t>(id)]); });
    if (it == order_.end()) break;
    worker_slot& w = *slots_[static_cast<std::size_t>(*it)];
    job_ptr job = std::move(queue_.front());
    queue_.pop_front();
    ++w.running;
    job->assign(info(w));
    w.in_flight.push_back(job);
    w.outbox.push_back(job);
    ev.push_back(std::move(job));
    move_to_back(w.id);
    any = true;
  }
  if (!any) return false;
  for (auto& w : slots_)
    if (!w->outbox.empty()) flush(*w);
  ++stats_.dispatch_batches;
  last_batch_ = clock::now();
  return true;
}

bool pool_impl::flush(worker_slot& w) {
  bool wrote = false;
  while (!w.outbox.empty()) {
    job_state_base& job = *w.outbox.front();
    frame_header h = make_header(frame_type::job, job.id, job.payload.size());
    h.invoke = reinterpret_cast<std::uint64_t>(job.invoke);
    h.fn = job.fn;
    const std::uint64_t sent = write_frame(w.jobs, h, job.payload.data(), w.outbox_sent);
    wrote |= sent != w.outbox_sent;
    w.outbox_sent = sent;
    if (sent < frame_bytes(h.size)) break;
    job.payload.release();
    w.outbox.pop_front();
    w.outbox_sent = 0;
  }
  // Frames still waiting for room: the worker rings us when it makes some. Say so
  // before publishing, or the worker may drain the ring before it can see the flag.
  if (!w.outbox.empty()) w.jobs.control().producer_waiting.store(1, std::memory_order_seq_cst);
  if (wrote) {
    w.jobs.publish();
    wake_futex_sleeper(w.jobs.control().consumer_sleeping);
  }
  return wrote;
}

bool pool_impl::results_pending() const noexcept {
  return std::any_of(slots_.begin(), slots_.end(),
                     [](const auto& w) { return w->alive && !w->corrupt && !w->results.empty(); });
}

bool pool_impl::has_work_locked() const {
  const auto now = clock::now();
  for (const auto& w : slots_) {
    if (w->alive && !w->corrupt && !w->results.empty()) return true;
    if (!w->outbox.empty() && w->jobs.free_space() >= frame_room_needed(*w)) return true;
    if (w->respawn_at && now >= *w->respawn_at) return true;
  }
  return tick_due_locked(now);
}

bool pool_impl::tick_due_locked(clock::time_point now) const {
  if (queue_.empty() || opts_.tick == 0us || now < last_batch_ + opts_.tick) return false;
  // With every worker full, a due tick is no work: a result wakes us first.
  return std::any_of(order_.begin(), order_.end(), [&](int id) { return can_take(*slots_[static_cast<std::size_t>(id)]); });
}

bool pool_impl::can_take(const worker_slot& w) const {
  return w.state == worker_state::ready && !w.corrupt && w.running < opts_.concurrency;
}

std::chrono::nanoseconds pool_impl::sleep_budget_locked() const {
  const auto now = clock::now();
  auto until = now + idle_sleep;
  if (!queue_.empty() && opts_.tick > 0us &&
      std::any_of(slots_.begin(), slots_.end(), [&](const auto& w) { return can_take(*w); }))
    until = std::min(until, last_batch_ + opts_.tick);
  for (const auto& w : slots_)
    if (w->respawn_at) until = std::min(until, *w->respawn_at);
  return std::max(until - now, clock::duration::zero());
}

void pool_impl::end_all(const std::string& why, events& ev) {
  auto cancel = [&](job_ptr& job) {
    job->fail(job_cancelled(why));
    ev.push_back(std::move(job));
    ++stats_.failed;
  };
  for (auto& w : slots_) {
    std::for_each(w->in_flight.begin(), w->in_flight.end(), cancel);
    w->in_flight.clear();
    w->outbox.clear();
    w->running = 0;
  }
  std::for_each(queue_.begin(), queue_.end(), cancel);
  queue_.clear();
}

std::string pool_impl::refusal_locked() const {
  if (!broken_.empty()) return broken_;
  if (phase_ != phase::running && phase_ != phase::starting) return "parallelcode: the pool is not running";
  return {};
}

void pool_impl::submit(job_ptr job) {
  events ev;
  if (inherited()) {
    job->fail(
        job_cancelled("parallelcode: this process is a fork of the pool's process: submit from the original"));
    ev.push_back(std::move(job));
    publish(ev);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    if (std::string why = refusal_locked(); !why.empty()) {
      job->fail(job_cancelled(why));
      ev.push_back(std::move(job));
    } else if (job->payload.size() > opts_.max_payload) {
      job->fail(payload_error("parallelcode: the job's data is " + std::to_string(job->payload.size()) +
                                                      " bytes encoded, over max_payload (" +
                                                      std::to_string(opts_.max_payload) + ")"));
      ev.push_back(std::move(job));
      ++stats_.failed;
    } else {
      job->id = ++next_id_;
      job->queued_at = clock::now();
      ++stats_.submitted;
      queue_.push_back(std::move(job));
      if (opts_.tick == 0us)
        dispatch(ev);
      else if (queue_.size() == 1)
        wake_eventfd_sleeper(shm_.supervisor_sleeping(), doorbell_.get());
    }
  }
  publish(ev);
}

bool pool_impl::kill(pid_t pid) {
  if (pid <= 0 || inherited()) return false;
  std::lock_guard lock(mutex_);
  if (phase_ == phase::stopped) return false;
  for (const auto& w : slots_)
    if (w->alive && w->pid == pid) return ::pidfd_send_signal(w->pidfd.get(), SIGKILL, nullptr, 0) == 0;
  return false;
}

std::vector<worker_info> pool_impl::workers() const {
  if (inherited()) return {};
  std::lock_guard lock(mutex_);
  std::vector<worker_info> out;
  out.reserve(order_.size());
  for (int id : order_) out.push_back(info(*slots_[static_cast<std::size_t>(id)]));
  return out;
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
                            "parallelcode: free() from a job callback would wait for itself");
  phase_ = phase::stopping;
  stop_ = true;
  ::eventfd_write(doorbell_.get(), 1);
  lock.unlock();
  if (thread_) thread_->join();
  lock.lock();
  thread_.reset();
  slots_.clear();
  order_.clear();
  shm_ = region();
  doorbell_.reset();
  phase_ = phase::stopped;
  changed_.notify_all();
}

bool pool_impl::inherited() const noexcept {
  return fork_generation() != fork_generation_.load(std::memory_order_relaxed);
}

worker_info pool_impl::info(const worker_slot& w) const {
  return {w.id, w.pid, w.state, w.running, w.done, w.respawns};
}

void pool_impl::move_to_back(int id) {
  const auto it = std::find(order_.begin(), order_.end(), id);
  if (it != order_.end()) std::rotate(it, it + 1, order_.end());
}

void pool_impl::publish(events& ev) noexcept {
  for (job_ptr& job : ev) job->publish();
  ev.clear();
}

}  // namespace detail

unsigned default_workers() noexcept { return std::max(1u, std::thread::hardware_concurrency()); }

pool::pool() : impl_(std::make_unique<detail::pool_impl>()) {}
pool::~pool() {
  // A forked copy of a running pool may hold state torn mid-update at the fork: leave it.
  if (impl_->inherited()) (void)impl_.release();
}

void pool::start(const options& opts) {
  // A forked copy of a running pool cannot be restarted in place: start afresh.
  if (impl_->inherited()) {
    (void)impl_.release();
    impl_ = std::make_unique<detail::pool_impl>();
  }
  impl_->start(opts);
}
void pool::submit(std::shared_ptr<detail::job_state_base> job, const job_options&) { impl_->submit(std::move(job)); }
bool pool::kill(pid_t pid) { return impl_->kill(pid); }
std::vector<worker_info> pool::workers() const { return impl_->workers(); }
pool_stats pool::stats() const { return impl_->stats(); }
void pool::free() { impl_->free(); }

pool& default_pool() {
  static pool instance;
  return instance;
}

}  // namespace parallelcode
