#include "consumer.hpp"

#include <algorithm>

#include <parallelcode/named_tasks.hpp>

#include "answers.hpp"
#include "protocol.hpp"
#include "scripts.hpp"

namespace parallelcode::remote {

namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

const script complete_script{scripts::complete};
const script renew_script{scripts::renew};
const script sweep_script{scripts::sweep};

constexpr auto block = 500ms;        // each XREADGROUP's wait: how soon the reader sees a stop
constexpr std::size_t batch_size = 256;  // jobs per script call

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// An entry's fields by name; an odd or non-string list gives what it can.
std::map<std::string, std::string> fields_of(const redisReply& fields) {
  std::map<std::string, std::string> out;
  for (std::size_t k = 0; k + 1 < size(fields); k += 2) {
    const auto& key = at(fields, k);
    const auto& value = at(fields, k + 1);
    if (is_array(key) || is_array(value)) continue;
    out.emplace(text(key), text(value));
  }
  return out;
}

// Nothing if the field is absent; -1 if it is not a whole number of 0 or more.
std::optional<long long> number_field(const std::map<std::string, std::string>& f, const char* key) {
  const auto it = f.find(key);
  if (it == f.end()) return std::nullopt;
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (end == it->second.c_str() || *end != '\0' || v < 0) return -1;
  return v;
}

}  // namespace

consumer::consumer(pool& workers, consumer_settings settings)
    : pool_(workers),
      settings_(std::move(settings)),
      address_(redis_address::parse(settings_.url)),
      keys_(settings_.queue) {
  if (!settings_.password.empty()) address_.password = settings_.password;
  if (settings_.slots == 0) settings_.slots = 1;
  // Wrong credentials end the daemon now; an unreachable Redis is waited for.
  try {
    connection c(address_, 2s, 5s);
    ensure_group(c, keys_);
  } catch (const credentials_refused&) {
    throw;
  } catch (const queue_error& e) {
    settings_.log(severity::warning, "queue: " + std::string(e.what()) + ": retrying in the background");
    told_down_ = true;
  }
  settings_.log(severity::info, "queue: consuming " + keys_.jobs + " at " + address_.display() + " as " + name_ + " (lease " +
                std::to_string(settings_.lease.count()) + " ms, " + std::to_string(settings_.slots) + " running and " +
                std::to_string(settings_.prefetch) + " waiting at most)");
  reader_ = std::thread([this] { read_loop(); });
  keeper_ = std::thread([this] { keep_loop(); });
}

consumer::~consumer() {
  {
    std::lock_guard lock(mutex_);
    quit_ = true;
    taking_ = false;
  }
  changed_.notify_all();
  reader_.join();
  keeper_.join();
}

void consumer::stop_taking() {
  {
    std::lock_guard lock(mutex_);
    taking_ = false;
  }
  changed_.notify_all();
}

std::size_t consumer::held() const {
  std::lock_guard lock(mutex_);
  return held_.size();
}

control::queue_status consumer::status() const {
  control::queue_status s;
  s.url = address_.display();
  s.queue = keys_.name;
  s.consumer = name_;
  {
    std::lock_guard lock(mutex_);
    s.connected = reader_up_ && keeper_up_;
    s.held = held_.size();
  }
  s.completed = completed_;
  s.renewals = renewals_;
  s.reclaims = reclaims_;
  s.dead_lettered = dead_lettered_;
  s.discarded = discarded_;
  return s;
}

void consumer::set_connected(bool reader, bool up, const std::string& why) {
  std::lock_guard lock(mutex_);
  (reader ? reader_up_ : keeper_up_) = up;
  if (!up && !told_down_) {
    told_down_ = true;
    settings_.log(severity::warning, "queue: lost Redis (" + why + "): serving the socket, reconnecting");
  } else if (up && told_down_ && reader_up_ && keeper_up_) {
    told_down_ = false;
    settings_.log(severity::info, "queue: reconnected to Redis at " + address_.display());
  }
}

void consumer::wait_before_retry(std::chrono::milliseconds& backoff) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, backoff, [&] { return quit_; });
  backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
}

void consumer::read_loop() {
  std::optional<connection> c;
  auto backoff = 50ms;
  for (;;) {
    std::size_t room;
    {
      std::unique_lock lock(mutex_);
      const std::size_t most = settings_.slots + settings_.prefetch;
      changed_.wait(lock, [&] { return quit_ || !taking_ || unfinished_ < most; });
      if (quit_ || !taking_) return;
      room = most - unfinished_;
    }
    try {
      if (!c) {
        c.emplace(address_, 2s, block + 5s);
        ensure_group(*c, keys_);
        take_lost_deliveries(*c);
        set_connected(true, true);
        backoff = 50ms;
      }
      const auto r = c->command({"XREADGROUP", "GROUP", std::string(queue_keys::group), name_, "COUNT",
                                 std::to_string(std::min(room, batch_size)), "BLOCK", std::to_string(block.count()),
                                 "STREAMS", keys_.jobs, ">"});
      if (is_error(*r, "NOGROUP")) {
        ensure_group(*c, keys_);  // the stream was deleted under us (a purge, a FLUSHALL)
        continue;
      }
      const auto& streams = check(r, "XREADGROUP");
      for (std::size_t s = 0; s < size(streams); ++s) {
        const auto& entries = at(at(streams, s), 1);
        for (std::size_t i = 0; i < size(entries); ++i) take(at(entries, i), 1, {});
      }
    } catch (const queue_error& e) {
      c.reset();
      set_connected(true, false, e.what());
      wait_before_retry(backoff);
    }
  }
}

// Entries Redis delivered to us whose reply never arrived (the connection broke on the
// way): ours in its books, nobody's in fact, until a sweep a lease later. Read back
// from our own pending list (ID 0), which delivers nothing new.
void consumer::take_lost_deliveries(connection& c) {
  for (std::string after = "0";;) {
    const auto r = c.command({"XREADGROUP", "GROUP", std::string(queue_keys::group), name_, "COUNT",
                              std::to_string(batch_size), "STREAMS", keys_.jobs, after});
    const auto& streams = check(r, "XREADGROUP of our pending jobs");
    if (size(streams) == 0) return;
    const auto& entries = at(at(streams, 0), 1);
    if (size(entries) == 0) return;
    for (std::size_t i = 0; i < size(entries); ++i) {
      const auto& e = at(entries, i);
      after = text(at(e, 0));
      bool known;
      {
        std::lock_guard lock(mutex_);
        known = held_.count(after) > 0;
      }
      if (known) continue;
      if (!is_array(at(e, 1))) {  // deleted under us: nothing to run, nobody to answer
        // Acknowledged through the fenced completion (no reply, no answer), never bare:
        // a daemon that reclaimed it meanwhile keeps it.
        auto args = completion_args();
        args.insert(args.end(), {after, "", "", "", ""});
        check(complete_script.run(c, {keys_.jobs, keys_.dead}, args), "the completion of a deleted entry");
        continue;
      }
      settings_.log(severity::info, "queue: took back job " + after + ", delivered to us as the connection broke");
      take(e, 1, {});
    }
  }
}

void consumer::take(const redisReply& entry, long long deliveries, const std::string& previous_owner) {
  if (!is_array(entry) || size(entry) < 2) return;
  std::string id = text(at(entry, 0));
  const auto f = is_array(at(entry, 1)) ? fields_of(at(entry, 1)) : std::map<std::string, std::string>{};
  auto field = [&](const char* k) {
    const auto it = f.find(k);
    return it == f.end() ? std::string() : it->second;
  };
  {
    std::lock_guard lock(mutex_);
    if (held_.count(id)) return;  // ours already (a sweep racing a read)
    held_.emplace(id, held_job{field("reply"), field("idem")});
    ++unfinished_;
  }
  if (deliveries > 1) {
    ++reclaims_;
    settings_.log(severity::warning, "queue: reclaimed job " + id + " from " + previous_owner + " (delivery " + std::to_string(deliveries) + ")");
  }
  using control::error_answer;
  if (deliveries > static_cast<long long>(settings_.max_deliveries)) {
    const std::string why = "delivered " + std::to_string(deliveries) + " times: the lease of its daemon (last " +
                            previous_owner + ") ran out each time, so it died or stalled under the job";
    finish(std::move(id), error_answer(std::nullopt, "dead_lettered", why), why);
    return;
  }
  if (field("reply").empty()) {  // nobody to answer: kept for a person to look at
    const std::string why = "the entry has no reply field: nobody to answer";
    finish(std::move(id), error_answer(std::nullopt, "bad_request", why), why);
    return;
  }
  const auto timeout = number_field(f, "timeout_ms");
  const auto retries = number_field(f, "retries");
  const auto deadline = number_field(f, "deadline");
  rapidjson::Document args;
  std::optional<std::string> bad;
  if (!f.count("task") || !f.count("args")) bad = "the entry needs the fields task and args";
  else if (auto not_json = control::parse(field("args"), args)) bad = "the arguments are " + *not_json;
  else if (timeout == -1 || retries == -1 || deadline == -1) bad = "timeout_ms, retries and deadline must be whole numbers";
  else if (retries && *retries > 100) bad = "retries must be 0 to 100";
  if (bad) {
    finish(std::move(id), error_answer(std::nullopt, "bad_request", *bad));
    return;
  }
  const std::string task = field("task");
  if (!has_task(task)) {
    finish(std::move(id), error_answer(std::nullopt, "unknown_task", "no task is named '" + task + "': see 'parallelcode tasks'"));
    return;
  }
  if (deadline && now_ms() + clock_offset_ms_ > *deadline) {
    finish(std::move(id), error_answer(std::nullopt, "deadline_exceeded", "the job was taken after its deadline"));
    return;
  }
  job_options opts;
  if (timeout) opts.timeout = std::chrono::milliseconds(*timeout);
  if (retries) opts.retries = static_cast<unsigned>(*retries);
  auto job = pool_.job(&run_json, json_call{task, field("args")}, opts);
  job.on_done([this, id](const std::string& result, const job_context& ctx) {
    finish(id, control::result_answer(std::nullopt, result, ctx.worker.pid, name_));  // for map --queue --joblog
  });
  job.on_error([this, id](const job_error& e, const job_context&) {
    if (dynamic_cast<const job_cancelled*>(&e)) release(id);  // the pool stopped under it: not the job's fault
    else finish(id, control::job_error_answer(std::nullopt, e));
  });
}

void consumer::finish(std::string id, std::string answer, std::string burial) {
  {
    std::lock_guard lock(mutex_);
    --unfinished_;
    completions_.push_back({std::move(id), std::move(answer), std::move(burial)});
  }
  changed_.notify_all();
}

void consumer::release(const std::string& id) {
  bool idle;
  {
    std::lock_guard lock(mutex_);
    --unfinished_;
    held_.erase(id);
    idle = held_.empty();
  }
  changed_.notify_all();
  if (idle && settings_.on_idle) settings_.on_idle();
}

std::vector<std::string> consumer::completion_args() const {
  return {std::string(queue_keys::group), name_, keys_.prefix, std::to_string(settings_.reply_ttl.count()),
          std::to_string(settings_.idempotency_ttl.count())};
}

consumer::batch consumer::take_batch() {
  batch b;
  std::lock_guard lock(mutex_);
  if (completions_.empty()) return b;
  const std::size_t n = std::min(batch_size, completions_.size());
  b.done.assign(std::make_move_iterator(completions_.begin()), std::make_move_iterator(completions_.begin() + n));
  completions_.erase(completions_.begin(), completions_.begin() + n);
  b.args = completion_args();
  for (const auto& d : b.done) {
    const auto& h = held_.at(d.id);
    b.args.insert(b.args.end(), {d.id, h.reply, h.idem, d.answer, d.burial});
  }
  return b;
}

void consumer::put_back(batch& b) {
  std::lock_guard lock(mutex_);  // kept, in order, for the next connection
  completions_.insert(completions_.begin(), std::make_move_iterator(b.done.begin()), std::make_move_iterator(b.done.end()));
}

void consumer::settle(const batch& b, const reply& r) {
  const auto& result = check(r, "the completion");
  std::vector<std::string> lost;  // not answered by this completion
  for (std::size_t i = 0; i < size(at(result, 0)); ++i) {
    lost.push_back(text(at(at(result, 0), i)));
    settings_.log(severity::warning, "queue: discarded the completion of job " + lost.back() + ": its lease went to another daemon");
    ++discarded_;
  }
  for (std::size_t i = 0; i < size(at(result, 1)); ++i) {
    lost.push_back(text(at(at(result, 1), i)));
    settings_.log(severity::warning, "queue: discarded the completion of job " + lost.back() +
                  ": it was answered already (by the daemon its lease went to, or by us before a reply was lost)");
    ++discarded_;
  }
  std::size_t buried = 0;
  for (const auto& d : b.done)
    if (!d.burial.empty() && std::find(lost.begin(), lost.end(), d.id) == lost.end()) {
      ++buried;
      settings_.log(severity::warning, "queue: dead-lettered job " + d.id + ": " + d.burial);
    }
  dead_lettered_ += buried;
  completed_ += b.done.size() - lost.size() - buried;
  bool idle;
  {
    std::lock_guard lock(mutex_);
    for (const auto& d : b.done) held_.erase(d.id);
    idle = held_.empty();
  }
  changed_.notify_all();
  if (idle && settings_.on_idle) settings_.on_idle();
}

void consumer::flush(connection& c) {
  for (batch b = take_batch(); !b.done.empty(); b = take_batch()) {
    try {
      settle(b, complete_script.run(c, {keys_.jobs, keys_.dead}, b.args));
    } catch (const queue_error&) {
      put_back(b);
      throw;
    }
  }
}

void consumer::renew(connection& c) {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, h] : held_)
      if (!h.lost) ids.push_back(id);
  }
  for (std::size_t from = 0; from < ids.size(); from += batch_size) {
    std::vector<std::string> args{std::string(queue_keys::group), name_};
    args.insert(args.end(), ids.begin() + from, ids.begin() + std::min(ids.size(), from + batch_size));
    const auto r = renew_script.run(c, {keys_.jobs}, args);
    const auto& lost = check(r, "the renewal");
    renewals_ += args.size() - 2 - size(lost);
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < size(lost); ++i) {
      const std::string id = text(at(lost, i));
      if (auto it = held_.find(id); it != held_.end() && !it->second.lost) {
        it->second.lost = true;
        settings_.log(severity::warning, "queue: lost the lease on job " + id + ": another daemon may run it; ours will not be answered");
      }
    }
  }
}

void consumer::sweep(connection& c) {
  clock_offset_ms_ = redis_time_ms(c) - now_ms();
  {
    std::lock_guard lock(mutex_);
    if (!taking_) return;
  }
  const auto forget_after = std::max<std::chrono::milliseconds>(10 * settings_.lease, 10min);
  const auto r = sweep_script.run(c, {keys_.jobs}, {std::string(queue_keys::group), name_,
                                                   std::to_string(settings_.lease.count()), std::to_string(batch_size),
                                                   std::to_string(forget_after.count())});
  const auto& claimed = check(r, "the sweep");
  for (std::size_t i = 0; i < size(claimed); ++i) {
    const auto& e = at(claimed, i);
    take(e, integer(at(e, 2)), text(at(e, 3)));
  }
}

void consumer::keep_loop() {
  std::optional<connection> c;
  auto backoff = 50ms;
  const auto renew_every = std::max<std::chrono::milliseconds>(settings_.lease / 3, 10ms);
  const auto sweep_every = std::max<std::chrono::milliseconds>(settings_.lease / 4, 10ms);
  auto next_renew = clock::now() + renew_every;
  auto next_sweep = clock::now();
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      changed_.wait_until(lock, std::min(next_renew, next_sweep), [&] { return quit_ || !completions_.empty(); });
      if (quit_) return;
    }
    try {
      if (!c) {
        c.emplace(address_, 2s, 5s);
        set_connected(false, true);
        backoff = 50ms;
      }
      flush(*c);
      if (clock::now() >= next_renew) {
        next_renew = clock::now() + renew_every;
        renew(*c);
      }
      if (clock::now() >= next_sweep) {
        next_sweep = clock::now() + sweep_every;
        sweep(*c);
      }
    } catch (const queue_error& e) {
      c.reset();
      set_connected(false, false, e.what());
      wait_before_retry(backoff);
    }
  }
}

}  // namespace parallelcode::remote
