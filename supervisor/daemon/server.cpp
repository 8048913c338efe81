#include "server.hpp"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include <cerrno>
#include <csignal>
#include <cstdio>

#include <memory>
#include <system_error>
#include <variant>

#include "answers.hpp"
#include "protocol.hpp"

namespace parallelcode::control {

namespace {

using namespace std::chrono_literals;

constexpr std::size_t read_chunk = 64 * 1024;
constexpr int chunks_per_turn = 4;  // then the others get their turn: one fast client must not starve the loop
constexpr std::size_t max_jobs_per_client = 4096;
constexpr std::size_t max_request_bytes_per_client = std::size_t{64} << 20;
constexpr std::size_t max_unsent_bytes = std::size_t{16} << 20;  // a client that does not read stops being read
constexpr auto final_flush = 1s;                                 // for the last responses, when stopping
constexpr auto linger = 1s;                                      // reading what a refused client still sends
// Tiny jobs go to the pool many to a chunk (a job each costs more than their task):
// a task's plain submits batch once its runs are known to be short.
constexpr std::size_t max_batch_lines = 64;
constexpr std::size_t max_batch_bytes = 256 * 1024;
constexpr auto batch_work = 1ms;  // a chunk's most: lines times the task's recent mean running time
constexpr std::uint64_t known_after_runs = 16;

constexpr std::uint64_t listener_key = 0;
constexpr std::uint64_t signals_key = ~std::uint64_t{0};
constexpr std::uint64_t completions_key = ~std::uint64_t{0} - 1;

int checked(int result, const char* what) {
  if (result < 0) throw std::system_error(errno, std::generic_category(), what);
  return result;
}

}  // namespace

server::server(pool& workers, owned_fd listener, owned_fd signals, const server_settings& settings,
               const systemd_notifier& systemd)
    : pool_(workers),
      listener_(std::move(listener)),
      signals_(std::move(signals)),
      completions_ready_(checked(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")),
      epoll_(checked(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
      settings_(settings),
      metrics_(tasks()),
      systemd_(systemd) {
  for (auto [fd, key] : {std::pair{listener_.get(), listener_key}, std::pair{signals_.get(), signals_key},
                         std::pair{completions_ready_.get(), completions_key}}) {
    epoll_event e{};
    e.events = EPOLLIN;
    e.data.u64 = key;
    checked(::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &e), "epoll_ctl");
  }
}

bool server::watch(int op, int fd, std::uint32_t events, std::uint64_t key) {
  epoll_event e{};
  e.events = events;
  e.data.u64 = key;
  if (::epoll_ctl(epoll_.get(), op, fd, &e) == 0) return true;
  log(log_level::error, "epoll_ctl on fd %d: %s", fd, std::strerror(errno));
  return false;
}

int server::run() {
  systemd_.notify("READY=1\nSTATUS=" + status_line());
  for (;;) {
    int timeout_ms = 1000;  // idle clients are swept once a second
    if (reloading_) {
      check_reload_done();
      if (reloading_) timeout_ms = 50;  // the pool tells no one when a replacement pass ends: look again soon
    }
    if (stopping_) {
      const bool all_done = jobs_ == 0 && (!outside_ || outside_->held() == 0);
      if (all_done || (drain_until_ && clock::now() >= *drain_until_)) break;
      if (drain_until_) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(*drain_until_ - clock::now());
        timeout_ms = static_cast<int>(std::clamp<long long>(left.count(), 0, 1000));
      }
    }
    timeout_ms = pet_watchdog(timeout_ms);  // from the loop itself: a wedged loop stops petting
    epoll_event events[64];
    const int n = ::epoll_wait(epoll_.get(), events, 64, timeout_ms);
    if (n < 0 && errno != EINTR) {
      log(log_level::error, "epoll_wait: %s", std::strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      const std::uint64_t key = events[i].data.u64;
      if (key == listener_key) {
        accept_clients();
      } else if (key == signals_key) {
        handle_signals();
      } else if (key == completions_key) {
        deliver_completions();
      } else if (clients_.count(key)) {
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_client(key);
        if (clients_.count(key) && (events[i].events & EPOLLOUT)) write_client(key);
      }
    }
    sweep_idle_clients();
  }
  // Whatever still runs is cancelled; its clients hear so, then we leave.
  pool_.free();
  deliver_completions();
  const auto until = clock::now() + final_flush;
  while (clock::now() < until) {
    bool unsent = false;
    for (auto& [id, c] : clients_) {
      if (c.out.empty()) continue;
      const ssize_t sent = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (sent > 0) c.out.erase(0, static_cast<std::size_t>(sent));
      unsent |= !c.out.empty() && (sent > 0 || errno == EAGAIN);
    }
    if (!unsent) break;
    epoll_event ignored[8];
    ::epoll_wait(epoll_.get(), ignored, 8, 10);
  }
  return 0;
}

void server::watch_listener(bool on) {
  if (listening_ == on) return;
  // If epoll refuses, listening_ still says what epoll watches (the refusal is logged).
  if (watch(EPOLL_CTL_MOD, listener_.get(), on ? EPOLLIN : 0u, listener_key)) listening_ = on;
}

void server::accept_clients() {
  for (;;) {
    owned_fd fd = accept_client(listener_);
    if (!fd) {
      // Out of file descriptors: the listener stays readable, so stop watching it
      // until a client leaves, rather than spin on it.
      if (errno == EMFILE || errno == ENFILE) {
        if (!evict_an_idle_client()) watch_listener(false);
      }
      return;
    }
    const auto uid = peer_uid(fd);
    const bool ours = uid && (*uid == ::geteuid() || *uid == 0);
    if (!ours && !(uid && settings_.group && peer_in_group(fd, *settings_.group))) {
      log(log_level::warning, "refused a client of uid %d: only uid %d, root%s may use this socket",
          static_cast<int>(uid.value_or(0)), static_cast<int>(::geteuid()), settings_.group ? " and the socket's group" : "");
      std::string out;
      append_frame(out, error_answer(std::nullopt, "forbidden", "this socket serves uid " +
                                                                    std::to_string(::geteuid()) + " and root only"));
      ::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      continue;
    }
    if (clients_.size() >= settings_.max_clients && !evict_an_idle_client()) {
      std::string out;
      log(log_level::debug, "refused a client: %u clients, all of them busy", settings_.max_clients);
      append_frame(out, error_answer(std::nullopt, "busy", "too many clients, all of them busy"));
      ::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      continue;
    }
    const std::uint64_t id = next_client_++;
    if (!watch(EPOLL_CTL_ADD, fd.get(), EPOLLIN, id)) continue;  // unwatched it would never be heard: closed
    client& c = clients_[id];
    c.fd = std::move(fd);
    c.watched = EPOLLIN;
  }
}

// At the limit, the client that has been silent longest with no job in flight
// makes room: idle connections cannot lock everyone out.
bool server::evict_an_idle_client() {
  auto idle = clients_.end();
  for (auto it = clients_.begin(); it != clients_.end(); ++it)
    if (it->second.jobs.empty() && it->second.out.empty() && (idle == clients_.end() || it->second.last_heard < idle->second.last_heard))
      idle = it;
  if (idle == clients_.end()) return false;
  drop(idle->first);
  return true;
}

void server::sweep_idle_clients() {
  const auto now = clock::now();
  std::vector<std::uint64_t> gone;
  for (auto& [id, c] : clients_) {
    const bool refused_and_lingering = c.closing && now - c.last_heard > linger;
    const bool silent = c.jobs.empty() && c.out.empty() && now - c.last_heard > settings_.idle_timeout;
    if (refused_and_lingering || silent) gone.push_back(id);
  }
  for (auto id : gone) drop(id);
}

void server::read_client(std::uint64_t id) {
  client& c = clients_[id];
  char chunk[read_chunk];
  for (int turn = 0; turn < chunks_per_turn; ++turn) {
    const ssize_t got = ::recv(c.fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (got == 0) {
      end_of_requests(id, c);
      return;
    }
    if (got < 0 && errno != EAGAIN && errno != EINTR) {
      drop(id);  // gone: its queued jobs are cancelled, its running ones end unheard
      return;
    }
    if (got < 0) break;
    c.last_heard = clock::now();
    if (c.closing) continue;  // refused: read and forget what it still sends
    // Unfinished frames of many clients together must not grow the daemon past the limit.
    if (unfinished_bytes_ + static_cast<std::size_t>(got) > settings_.max_request_bytes) {
      fail_and_close(id, c, "busy",
                     "the daemon holds " + std::to_string(unfinished_bytes_) +
                         " bytes of unfinished requests, the most --max-request-bytes allows: try again later");
      if (!clients_.count(id)) return;
      break;
    }
    c.in.append(chunk, static_cast<std::size_t>(got));
    unfinished_bytes_ += static_cast<std::size_t>(got);
    // Frames as they complete; a bad length ends the connection before anything is buffered for it.
    // Those handled are erased once, after them all: a pass takes hundreds of small ones.
    std::size_t used = 0;
    while (!c.closing) {
      const frame_cut cut = cut_frame(std::string_view(c.in).substr(used), settings_.max_frame);
      if (cut.kind == frame_cut::bad_length) {
        fail_and_close(id, c, "bad_frame",
                       "frame length " + std::to_string(cut.length) + " is outside 1.." + std::to_string(settings_.max_frame));
        break;
      }
      if (cut.kind == frame_cut::partial) break;
      const std::string_view body(c.in.data() + used + 4, cut.length);
      used += 4 + std::size_t{cut.length};
      handle_frame(id, c, body);
    }
    if (!c.closing) consume_input(c, used);  // closing consumed all of it
    if (clients_.count(id)) flush_batch(id, c);
    if (!clients_.count(id)) return;  // answering a refusal found it gone
    if (c.lines >= max_jobs_per_client || c.request_bytes > max_request_bytes_per_client ||
        c.out.size() > max_unsent_bytes)
      break;
  }
  if (update_interest(id, c) && !c.out.empty()) write_client(id);
}

void server::write_client(std::uint64_t id) {
  client& c = clients_[id];
  while (!c.out.empty()) {
    const ssize_t sent = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      drop(id);
      return;
    }
    c.out.erase(0, static_cast<std::size_t>(sent));
  }
  // A refused client gets its answer, then an end of file: closing at once while
  // it still sends would reset the connection and lose the answer.
  if (c.out.empty() && c.closing) ::shutdown(c.fd.get(), SHUT_WR);
  if (c.out.empty() && c.done_sending && c.jobs.empty()) {
    drop(id);  // every answer it waited for is sent
    return;
  }
  update_interest(id, c);
}

// An end of file is either a client gone (both directions closed: its peer hung up)
// or a half-close (shutdown(SHUT_WR), as socat does at the end of its input), which
// only means no more requests: what is in flight is still answered.
void server::end_of_requests(std::uint64_t id, client& c) {
  pollfd p{c.fd.get(), POLLIN, 0};  // readable: its end of file
  const bool hung_up = ::poll(&p, 1, 0) != 1 || (p.revents & (POLLHUP | POLLERR));
  if (hung_up || c.closing || (c.jobs.empty() && c.out.empty())) {
    drop(id);  // gone: its queued jobs are cancelled, its running ones end unheard
    return;
  }
  c.done_sending = true;
  consume_input(c, c.in.size());  // half a frame will never be whole
  update_interest(id, c);
}

void server::consume_input(client& c, std::size_t n) {
  c.in.erase(0, n);
  unfinished_bytes_ -= n;
  if (c.in.empty() && c.in.capacity() > read_chunk * chunks_per_turn) std::string().swap(c.in);  // a big frame's room goes back
}

bool server::update_interest(std::uint64_t id, client& c) {
  // Not read once it half-closed: its end of file would be seen again and again. A hang-up still shows (EPOLLHUP).
  const bool read = !c.done_sending && (c.closing || (c.lines < max_jobs_per_client &&
                                                      c.request_bytes <= max_request_bytes_per_client &&
                                                      c.out.size() <= max_unsent_bytes));
  const std::uint32_t want = (read ? EPOLLIN : 0u) | (c.out.empty() ? 0u : EPOLLOUT);
  if (want == c.watched) return true;
  if (watch(EPOLL_CTL_MOD, c.fd.get(), want, id)) {
    c.watched = want;
    return true;
  }
  drop(id);  // a client epoll does not watch as it should would hang
  return false;
}

void server::drop(std::uint64_t id) {
  const auto it = clients_.find(id);
  if (it == clients_.end()) return;
  // Nobody is left to hear them: queued jobs go; running ones end unheard.
  for (auto& [seq, job] : it->second.jobs) std::visit([](auto& j) { j.cancel(); }, job);
  unfinished_bytes_ -= it->second.in.size();
  clients_.erase(it);
  watch_listener(true);  // a file descriptor is free again
}

void server::respond(client& c, std::string_view body) { append_frame(c.out, body); }

void server::fail_and_close(std::uint64_t id, client& c, std::string_view type, std::string_view message) {
  flush_batch(id, c);  // what it sent before is answered
  log(log_level::debug, "client %llu: %.*s: %.*s: closing its connection", static_cast<unsigned long long>(id),
      static_cast<int>(type.size()), type.data(), static_cast<int>(message.size()), message.data());
  respond(c, error_answer(std::nullopt, type, message));
  c.closing = true;
  consume_input(c, c.in.size());
  // read_client, where every call comes from, sends it as it ends: a send here could
  // drop the client (its peer gone) under the loop that still holds it.
}

void server::handle_frame(std::uint64_t id, client& c, std::string_view body) {
  request r = decode_request(body, &has_task);
  if (!std::holds_alternative<submit_request>(r)) flush_batch(id, c);  // the submits before it reach the pool first
  if (const auto* refused = std::get_if<request_error>(&r)) {
    if (refused->closes) fail_and_close(id, c, refused->type, refused->message);
    else respond(c, refusal(*refused, body.size()));
  } else if (auto* job = std::get_if<submit_request>(&r)) {
    submit(id, c, std::move(*job), body.size());
  } else if (std::holds_alternative<status_request>(r)) {
    daemon_status status{::getpid(), stopping_, pool_.stats(), pool_.workers(), std::nullopt};
    if (outside_) status.queue = outside_->status();
    respond(c, status_answer(id_of(r), status));
  } else if (std::holds_alternative<metrics_request>(r)) {
    respond(c, metrics_answer(id_of(r), metrics_text()));
  } else if (std::holds_alternative<tasks_request>(r)) {
    respond(c, tasks_answer(id_of(r), tasks()));
  } else if (const auto* k = std::get_if<kill_request>(&r)) {
    respond(c, kill(*k));
  } else if (const auto* n = std::get_if<scale_request>(&r)) {
    respond(c, scale(*n));
  } else if (const auto* stop = std::get_if<stop_request>(&r)) {
    respond(c, ok_answer(stop->id));
    log(log_level::info, "stop requested%s", stop->now ? " (now)" : "");
    begin_stop(!stop->now);
  }
}

// A daemon that stops, or is full, says so before it looks at the request's own fields.
std::string server::refusal(const request_error& e, std::size_t bytes) const {
  if (e.in == op::submit)
    if (auto no = admission(e.id, bytes)) return *no;
  if (e.in == op::scale && stopping_) return error_answer(e.id, "bad_request", "the daemon is stopping");
  return error_answer(e);
}

std::optional<std::string> server::admission(request_id rid, std::size_t bytes) const {
  if (stopping_) return error_answer(rid, "stopping", "the daemon is stopping and takes no new job");
  if (jobs_ + batch_.lines.size() >= settings_.max_jobs ||
      request_bytes_ + batch_.bytes + bytes > settings_.max_request_bytes)
    return error_answer(rid, "busy", "the daemon holds as many jobs as it may: try again later");
  return std::nullopt;
}

std::string server::kill(const kill_request& r) {
  if (!pool_.kill(static_cast<pid_t>(r.pid)))
    return error_answer(r.id, "not_a_worker", "pid " + std::to_string(r.pid) + " is not a worker of this daemon");
  log(log_level::info, "killed worker pid %lld on request", static_cast<long long>(r.pid));
  return ok_answer(r.id);
}

std::string server::scale(const scale_request& r) {
  try {
    if (stopping_) throw std::invalid_argument("the daemon is stopping");
    pool_.resize(r.workers);
    log(log_level::info, "scaled to %u worker%s on request", r.workers, r.workers == 1 ? "" : "s");
    announce_status();
    return ok_answer(r.id);
  } catch (const std::invalid_argument& e) {
    return error_answer(r.id, "bad_request", e.what());
  }
}

void server::submit(std::uint64_t id, client& c, submit_request&& r, std::size_t bytes) {
  if (auto no = admission(r.id, bytes)) {
    respond(c, *no);
    return;
  }
  task_counters* counted = metrics_.of(r.task);
  counted->submitted();
  const batched_line line{r.id, r.with_worker, counted};
  const std::size_t most = batch_size(r, bytes, *counted);
  if (most == 1) {
    flush_batch(id, c);
    job_options opts;
    if (r.timeout) opts.timeout = *r.timeout;
    if (r.retries) opts.retries = *r.retries;
    send_line(id, c, json_call{std::move(r.task), std::move(r.args)}, line, opts, bytes);
    return;
  }
  batch_.calls.push_back(json_call{std::move(r.task), std::move(r.args)});
  batch_.lines.push_back(line);
  batch_.bytes += bytes;
  if (batch_.lines.size() >= most || batch_.bytes >= max_batch_bytes) flush_batch(id, c);
}

// Lines in a batch: none for a job with its own timeout or retries (a chunk has one of
// each), a big one, or a task not known to be quick.
std::size_t server::batch_size(const submit_request& r, std::size_t bytes, const task_counters& counted) const {
  if (r.timeout || r.retries || bytes > max_batch_bytes / 4 || counted.runs() < known_after_runs) return 1;
  const auto recent = std::max(counted.recent_running(), std::chrono::nanoseconds(1));
  if (recent >= settings_.batch_below) return 1;
  return std::clamp<std::size_t>(static_cast<std::size_t>(batch_work / recent), 2, max_batch_lines);
}

std::function<void(std::string)> server::deliverer(std::uint64_t id, std::uint64_t seq, std::size_t lines,
                                                   std::size_t bytes) {
  return [this, id, seq, lines, bytes](std::string framed) {
    bool first;
    {
      std::lock_guard lock(completions_mutex_);
      first = completions_.empty();
      completions_.push_back({id, seq, lines, bytes, std::move(framed)});
    }
    if (first) wake();  // the rest join it before the loop takes them
  };
}

void server::in_flight_now(client& c, std::uint64_t seq, in_flight job, std::size_t lines, std::size_t bytes) {
  jobs_ += lines;
  c.lines += lines;
  c.request_bytes += bytes;
  request_bytes_ += bytes;
  c.jobs.emplace(seq, std::move(job));
}

void server::send_line(std::uint64_t id, client& c, json_call call, const batched_line& line, const job_options& opts,
                       std::size_t bytes) {
  const std::uint64_t seq = next_job_++;
  auto deliver = deliverer(id, seq, 1, bytes);
  auto job = pool_.job(&run_json, std::move(call), opts);
  job.on_done([deliver, line](const std::string& result, const job_context& ctx) {
    line.counted->completed(ctx);
    std::string framed;
    append_frame(framed, result_answer(line.rid, result, line.with_worker ? std::optional<int>(ctx.worker.pid) : std::nullopt));
    deliver(std::move(framed));
  });
  job.on_error([deliver, line](const job_error& e, const job_context& ctx) {
    line.counted->failed(e, ctx);
    std::string framed;
    append_frame(framed, job_error_answer(line.rid, e));
    deliver(std::move(framed));
  });
  in_flight_now(c, seq, std::move(job), 1, bytes);
}

namespace {

// A batch's lines, run one by one in the worker as pool::map's items are.
constexpr auto run_line = [](json_call&& call) { return run_json(call); };
using line_chunk = detail::map_chunk<json_call>;
using line_results = detail::map_chunk_result<std::string>;

// One line's share of its chunk's run: what the metrics and the batching see.
job_context line_context(job_context ctx, std::size_t lines) {
  ctx.running /= static_cast<long>(std::max<std::size_t>(lines, 1));
  return ctx;
}

// An item's error as its line would have had it alone: arguments that do not fit the
// task are a payload_error there (the worker tells it so), not what its function threw.
template <class F>
void line_failed(const detail::map_item_error& item, F&& answer) {
  static const std::string codec = detail::readable_type_name(typeid(detail::codec_error));
  if (item.type == codec) answer(payload_error("parallelcode: " + item.message));  // as the pool words it
  else answer(job_failed(item.type, item.message));
}

}  // namespace

// The batch goes as one chunk; each line is still answered on its own, a failed item
// with its own job_failed, and a chunk that does not come back (its worker died, it
// timed out, it was cancelled) fails each of its lines with the chunk's error.
void server::flush_batch(std::uint64_t id, client& c) {
  if (batch_.lines.empty()) return;
  batch taken = std::exchange(batch_, {});
  if (taken.lines.size() == 1) {
    send_line(id, c, std::move(taken.calls.front()), taken.lines.front(), {}, taken.bytes);
    return;
  }
  const std::uint64_t seq = next_job_++;
  const std::size_t n = taken.lines.size();
  auto deliver = deliverer(id, seq, n, taken.bytes);
  auto job = pool_.job(&detail::run_map_chunk<decltype(run_line), json_call>, line_chunk{0, std::move(taken.calls)});
  auto lines = std::make_shared<const std::vector<batched_line>>(std::move(taken.lines));
  job.on_done([deliver, lines](const line_results& r, const job_context& chunk_ctx) {
    const job_context ctx = line_context(chunk_ctx, lines->size());
    std::vector<const detail::map_item_error*> failed(lines->size(), nullptr);
    for (const auto& e : r.errors)
      if (e.index < failed.size()) failed[e.index] = &e;
    std::string framed;
    for (std::size_t i = 0; i < lines->size(); ++i) {
      const batched_line& line = (*lines)[i];
      if (failed[i]) {
        line_failed(*failed[i], [&](const job_error& e) {
          line.counted->failed(e, ctx);
          append_frame(framed, job_error_answer(line.rid, e));
        });
      } else if (i >= r.values.size()) {
        const payload_error e("the worker sent " + std::to_string(r.values.size()) + " results for " +
                              std::to_string(lines->size()) + " lines");
        line.counted->failed(e, ctx);
        append_frame(framed, job_error_answer(line.rid, e));
      } else {
        line.counted->completed(ctx);
        append_frame(framed, result_answer(line.rid, r.values[i],
                                           line.with_worker ? std::optional<int>(ctx.worker.pid) : std::nullopt));
      }
    }
    deliver(std::move(framed));
  });
  job.on_error([deliver, lines](const job_error& e, const job_context& chunk_ctx) {
    const job_context ctx = line_context(chunk_ctx, lines->size());
    std::string framed;
    for (const auto& line : *lines) {
      line.counted->failed(e, ctx);
      append_frame(framed, job_error_answer(line.rid, e));
    }
    deliver(std::move(framed));
  });
  in_flight_now(c, seq, std::move(job), n, taken.bytes);
}

void server::deliver_completions() {
  eventfd_t ignored;
  ::eventfd_read(completions_ready_.get(), &ignored);
  {
    std::lock_guard lock(completions_mutex_);
    delivering_.swap(completions_);
  }
  // Every answer first, then one send per client: a client's answers leave together.
  std::vector<std::uint64_t> answered;
  for (auto& d : delivering_) {
    jobs_ -= d.lines;
    request_bytes_ -= d.bytes;
    const auto it = clients_.find(d.client);
    if (it == clients_.end()) continue;  // it left: nobody to tell
    client& c = it->second;
    c.jobs.erase(d.job);
    c.lines -= d.lines;
    c.request_bytes -= d.bytes;
    c.out += d.framed;
    answered.push_back(d.client);
  }
  delivering_.clear();
  std::sort(answered.begin(), answered.end());
  answered.erase(std::unique(answered.begin(), answered.end()), answered.end());
  for (auto id : answered)
    if (clients_.count(id)) write_client(id);
}

void server::handle_signals() {
  signalfd_siginfo info{};
  while (::read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    const int sig = static_cast<int>(info.ssi_signo);
    const auto n = static_cast<unsigned>(pool_.workers().size());
    switch (sig) {
      case SIGTERM:
        log(log_level::info, "SIGTERM: taking no new job, letting queued and running ones finish within %lld ms",
            static_cast<long long>(settings_.drain_timeout.count()));
        begin_stop(true);
        break;
      case SIGINT:
      case SIGQUIT:
        log(log_level::info, "%s: stopping now", signal_name(sig).c_str());
        begin_stop(false);
        break;
      case SIGHUP:
        if (stopping_) {
          log(log_level::warning, "SIGHUP: ignored while stopping");
        } else {
          log(log_level::info, "SIGHUP: replacing every worker, one at a time");
          replacing_.clear();
          for (const auto& w : pool_.workers())
            if (w.pid) replacing_.push_back(w.pid);
          reloading_ = true;
          systemd_.reloading("replacing " + std::to_string(replacing_.size()) + " workers, one at a time");
          pool_.replace_workers();
        }
        break;
      case SIGTTIN:
      case SIGTTOU: {
        const unsigned want = sig == SIGTTIN ? n + 1 : n - 1;
        try {
          if (stopping_) throw std::invalid_argument("the daemon is stopping");
          if (want < 1) throw std::invalid_argument("never fewer than 1 worker");
          pool_.resize(want);
          log(log_level::info, "%s: %u worker%s", signal_name(sig).c_str(), want, want == 1 ? "" : "s");
          announce_status();
        } catch (const std::invalid_argument& e) {
          log(log_level::warning, "%s: staying at %u worker%s: %s", signal_name(sig).c_str(), n, n == 1 ? "" : "s", e.what());
        }
        break;
      }
      default:  // SIGCHLD: the pool reaps its own children; nothing else is ours
        break;
    }
  }
}

std::string server::metrics_text() const {
  return metrics_.text(pool_.stats(), pool_.workers(), outside_ ? std::optional(outside_->status()) : std::nullopt);
}

void server::wake() noexcept { ::eventfd_write(completions_ready_.get(), 1); }

void server::begin_stop(bool graceful) {
  if (!stopping_) systemd_.notify("STOPPING=1\nSTATUS=stopping: " + std::to_string(jobs_) + " jobs in flight");
  if (outside_) outside_->stop_taking();
  if (!graceful) {
    stopping_ = true;
    drain_until_ = clock::now();  // now: run() frees the pool and leaves
    return;
  }
  if (stopping_) return;
  stopping_ = true;
  drain_until_ = clock::now() + settings_.drain_timeout;
}

std::string server::status_line() const {
  const auto n = pool_.workers().size();
  const std::size_t jobs = jobs_ + (outside_ ? outside_->held() : 0);
  return "serving " + std::to_string(n) + (n == 1 ? " worker, " : " workers, ") + std::to_string(jobs) +
         (jobs == 1 ? " job" : " jobs") + " in flight";
}

// On changes (ready, scale, reload), never per job: systemd keeps every line it is sent.
void server::announce_status() const { systemd_.notify("STATUS=" + status_line()); }

int server::pet_watchdog(int cap_ms) {
  const auto every = systemd_.watchdog_interval();
  if (!every) return cap_ms;
  const auto now = clock::now();
  if (now >= next_pet_) {
    systemd_.notify("WATCHDOG=1");
    next_pet_ = now + *every;
  }
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(next_pet_ - now);
  return static_cast<int>(std::clamp<long long>(left.count(), 0, cap_ms));
}

void server::check_reload_done() {
  if (stopping_) {
    reloading_ = false;  // STOPPING=1 said it all
    return;
  }
  const auto now = pool_.workers();
  const bool old_left = std::any_of(now.begin(), now.end(), [this](const worker_info& w) {
    return w.state != worker_state::ready || std::find(replacing_.begin(), replacing_.end(), w.pid) != replacing_.end();
  });
  if (old_left) return;
  reloading_ = false;
  replacing_.clear();
  log(log_level::info, "SIGHUP: every worker replaced");
  systemd_.notify("READY=1\nSTATUS=" + status_line());
}

}  // namespace parallelcode::control
