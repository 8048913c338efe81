// The submitter's end of a remote queue: submits on one connection, answers
// arrive on another, which a thread of our own blocks on (BLMOVE from our reply list).

#include <parallelcode/remote.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#include "keys.hpp"
#include "protocol.hpp"
#include "scripts.hpp"

namespace parallelcode {

namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

const remote::script submit_script{remote::scripts::submit};
const remote::script cancel_script{remote::scripts::cancel};
const remote::script retry_script{remote::scripts::retry};
const remote::script purge_script{remote::scripts::purge};
const remote::script drain_script{remote::scripts::drain};

std::string random_name() {
  std::random_device rd;
  char s[33];
  std::snprintf(s, sizeof s, "%08x%08x%08x%08x", rd(), rd(), rd(), rd());
  return s;
}

// The job_error an answer names, as the local pool would have thrown it.
[[noreturn]] void throw_error(const rapidjson::Value& e) {
  auto str = [&](const char* k) { return e.HasMember(k) && e[k].IsString() ? control::string_member(e, k) : std::string(); };
  auto num = [&](const char* k) -> std::int64_t { return e.HasMember(k) && e[k].IsInt64() ? e[k].GetInt64() : 0; };
  const std::string type = str("type"), message = str("message");
  if (type == "job_failed") throw job_failed(str("exception"), message);
  if (type == "worker_lost")
    throw worker_lost(static_cast<pid_t>(num("pid")), static_cast<int>(num("signal")), static_cast<int>(num("exit_status")));
  if (type == "job_timeout") throw job_timeout(std::chrono::milliseconds(num("timeout_ms")), static_cast<pid_t>(num("pid")));
  if (type == "payload_error" || type == "bad_request") throw payload_error(message);
  if (type == "unknown_task") throw job_failed("unknown_task", message);
  if (type == "job_cancelled") throw job_cancelled(message);
  if (type == "deadline_exceeded") throw deadline_exceeded(message);
  if (type == "dead_lettered") throw dead_lettered(message);
  throw job_error(type + ": " + message);
}

}  // namespace

struct remote_job::state {
  std::string id;
  std::mutex mutex;
  std::condition_variable arrived;
  std::optional<std::string> answer;
  std::string closed;  // why no answer will come, if the queue went first

  bool answered() {
    std::lock_guard lock(mutex);
    return answer.has_value();
  }
  void resolve(std::string a) {
    {
      std::lock_guard lock(mutex);
      if (answer) return;
      answer = std::move(a);
    }
    arrived.notify_all();
  }
  void close(const std::string& why) {
    {
      std::lock_guard lock(mutex);
      if (answer) return;
      closed = why;
    }
    arrived.notify_all();
  }
};

const std::string& remote_job::id() const {
  if (!state_) throw std::invalid_argument("an empty remote_job has no id");
  return state_->id;
}

std::string remote_job::answer() const {
  if (!state_) throw std::invalid_argument("an empty remote_job has no answer");
  std::unique_lock lock(state_->mutex);
  state_->arrived.wait(lock, [&] { return state_->answer || !state_->closed.empty(); });
  if (!state_->answer) throw queue_error(state_->closed);
  return *state_->answer;
}

bool remote_job::wait_for(std::chrono::milliseconds timeout) const {
  if (!state_) return true;
  std::unique_lock lock(state_->mutex);
  return state_->arrived.wait_for(lock, timeout, [&] { return state_->answer || !state_->closed.empty(); });
}

std::string remote_job::result() const {
  const std::string text = answer();
  rapidjson::Document d;
  if (auto bad = control::parse(text, d); bad || !d.IsObject())
    throw payload_error("the queue's answer is not JSON: " + bad.value_or("not an object"));
  if (d.HasMember("ok") && d["ok"].IsBool() && d["ok"].GetBool()) {
    const auto result = control::member_text(text, "result");
    return result ? std::string(*result) : "null";
  }
  if (!d.HasMember("error") || !d["error"].IsObject()) throw job_error("the queue's answer has neither a result nor an error");
  throw_error(d["error"]);
}

struct remote_queue::impl {
  remote::redis_address address;
  remote_options options;
  remote::queue_keys keys;
  std::string submitter = random_name();
  std::string reply_key;
  std::string taken_key;  // answers read, kept until we have them
  std::string shown = address.display();

  std::mutex command_mutex;  // the commands connection: one caller at a time
  std::optional<remote::connection> commands;

  std::mutex jobs_mutex;
  std::unordered_map<std::string, std::vector<std::shared_ptr<remote_job::state>>> waiting;
  std::unordered_map<std::string, std::string> early;  // answers that beat their submit's reply
  std::multimap<clock::time_point, std::shared_ptr<remote_job::state>> deadlines;
  bool stopping = false;
  std::thread receiver;

  impl(std::string_view url, remote_options o)
      : address(remote::redis_address::parse(url)), options(std::move(o)), keys(options.name) {
    if (!options.password.empty()) address.password = options.password;
    else if (auto p = remote::password_from_environment(); !p.empty()) address.password = p;
    reply_key = keys.reply(submitter);
    taken_key = reply_key + ":taken";
    auto& c = connect();
    remote::ensure_group(c, keys);
    receiver = std::thread([this] { receive(); });
  }

  remote::connection open(std::chrono::milliseconds io_timeout) {
    return remote::connection(address, options.connect_timeout, io_timeout);
  }

  // The commands connection, made again if the last one broke. Under command_mutex.
  remote::connection& connect() {
    if (!commands) commands.emplace(open(std::max(options.connect_timeout, 5000ms)));
    return *commands;
  }

  // f(connection) under command_mutex. A connection that breaks is dropped and made
  // again, f with it, for up to options.reconnect_timeout; other errors go to the caller.
  template <class F>
  auto with_commands(F&& f) {
    std::lock_guard lock(command_mutex);
    const auto give_up = clock::now() + options.reconnect_timeout;
    for (auto backoff = 50ms;; backoff = std::min(backoff * 2, std::chrono::milliseconds(1000))) {
      try {
        return f(connect());
      } catch (const remote::connection_lost&) {
        commands.reset();
        if (clock::now() + backoff >= give_up) throw;
        std::this_thread::sleep_for(backoff);
      } catch (const queue_error&) {
        commands.reset();
        throw;
      }
    }
  }

  std::shared_ptr<remote_job::state> track(const std::string& id, std::optional<clock::time_point> deadline) {
    auto s = std::make_shared<remote_job::state>();
    s->id = id;
    std::lock_guard lock(jobs_mutex);
    if (auto it = early.find(id); it != early.end()) {
      s->answer = std::move(it->second);
      early.erase(it);
    } else {
      waiting[id].push_back(s);
      if (deadline) deadlines.emplace(*deadline, s);
    }
    return s;
  }

  void deliver(std::string_view line) {
    std::string_view id, answer;
    if (!remote::split_answer_line(line, id, answer)) return;  // our own wake-up, or not ours to read
    std::vector<std::shared_ptr<remote_job::state>> states;
    {
      std::lock_guard lock(jobs_mutex);
      const auto it = waiting.find(std::string(id));
      if (it == waiting.end()) {
        early.emplace(std::string(id), std::string(answer));
        return;
      }
      states = std::move(it->second);
      waiting.erase(it);
    }
    for (auto& s : states) s->resolve(std::string(answer));
  }

  // Jobs past their deadline that no daemon took: taken back, answered here.
  void expire(remote::connection& c) {
    std::vector<std::shared_ptr<remote_job::state>> due;
    {
      std::lock_guard lock(jobs_mutex);
      const auto end = deadlines.upper_bound(clock::now());
      for (auto it = deadlines.begin(); it != end; ++it) due.push_back(std::move(it->second));
      deadlines.erase(deadlines.begin(), end);  // asked once: a job a daemon holds is answered by it
    }
    for (auto& s : due) {
      if (s->answered()) continue;
      const auto r = cancel_script.run(c, {keys.jobs}, {std::string(remote::queue_keys::group), s->id});
      if (remote::integer(remote::check(r, "taking back a job past its deadline")) == 1)
        deliver(s->id + " " +
                control::error_answer(std::nullopt, "deadline_exceeded", "no daemon took the job before its deadline"));
    }
  }

  // How long a BLMOVE may wait: a second, or until the next deadline to look at.
  std::string wait_text() {
    auto wait = std::chrono::milliseconds(1000);
    {
      std::lock_guard lock(jobs_mutex);
      if (!deadlines.empty())
        wait = std::clamp(std::chrono::ceil<std::chrono::milliseconds>(deadlines.begin()->first - clock::now()), 1ms, wait);
    }
    char s[16];
    std::snprintf(s, sizeof s, "%.3f", static_cast<double>(wait.count()) / 1000);
    return s;
  }

  // Reads answers without ever holding the only copy in flight: BLMOVE one into our
  // taken list, move the rest there and read it all (drain.lua), and trim what we have
  // with the next read. After a broken connection the taken list is read again.
  void receive() {
    auto backoff = 50ms;
    std::optional<remote::connection> c;
    std::vector<std::string> last;  // the taken list as last read: not trimmed yet
    const std::vector<std::string> lists{reply_key, taken_key};
    const std::string ttl = std::to_string(options.reply_ttl.count());
    auto deliver_new = [&](const redisReply& list, std::size_t from) {
      std::vector<std::string> now;
      for (std::size_t i = 0; i < remote::size(list); ++i) now.push_back(remote::text(remote::at(list, i)));
      for (std::size_t i = from; i < now.size(); ++i)
        if (std::find(last.begin(), last.end(), now[i]) == last.end()) deliver(now[i]);
      last = std::move(now);
    };
    for (;;) {
      {
        std::lock_guard lock(jobs_mutex);
        if (stopping) return;
      }
      try {
        if (!c) {
          c.emplace(open(10s));
          deliver_new(remote::check(drain_script.run(*c, lists, {"0", ttl}), "reading answers"), 0);
        }
        if (!last.empty()) c->append({"LTRIM", taken_key, std::to_string(last.size()), "-1"});
        c->append({"BLMOVE", reply_key, taken_key, "LEFT", "RIGHT", wait_text()});
        if (!last.empty()) {
          remote::check(c->read_reply(), "trimming answers");
          last.clear();
        }
        const auto r = c->read_reply();
        const auto& moved = remote::check(r, "reading answers");
        backoff = 50ms;
        if (!remote::is_nil(moved)) {
          const std::string first = remote::text(moved);
          deliver(first);
          last = {first};
          deliver_new(remote::check(drain_script.run(*c, lists, {"999", ttl}), "reading answers"), 1);
        }
        expire(*c);
      } catch (const queue_error&) {
        c.reset();  // Redis went away: the answers wait in the lists for us
        std::unique_lock lock(jobs_mutex);
        if (stopping) return;
        lock.unlock();
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      }
    }
  }


  ~impl() {
    {
      std::lock_guard lock(jobs_mutex);
      stopping = true;
    }
    try {  // wakes our BLMOVE at once; if Redis is gone, its timeout does
      std::lock_guard lock(command_mutex);
      if (commands) commands->command({"RPUSH", reply_key, "stop"});
    } catch (const queue_error&) {
    }
    receiver.join();
    try {
      std::lock_guard lock(command_mutex);
      if (commands) commands->command({"DEL", reply_key, taken_key});
    } catch (const queue_error&) {
    }
    for (auto& [id, states] : waiting)
      for (auto& s : states) s->close("the remote_queue was closed before job " + id + " was answered");
  }
};

remote_queue::remote_queue(std::string_view url, remote_options options) : impl_(std::make_unique<impl>(url, std::move(options))) {}

remote_queue::~remote_queue() = default;

const std::string& remote_queue::where() const noexcept { return impl_->shown; }

remote_job remote_queue::submit(std::string_view task, std::string_view args, remote_job_options options) {
  remote_call call{std::string(task), std::string(args), std::move(options)};
  auto jobs = submit_all(std::span(&call, 1));
  if (!jobs[0])
    throw queue_busy("the queue " + impl_->keys.name + " holds " + std::to_string(impl_->options.max_length) +
                     " jobs, as many as it may: submit again later");
  return std::move(*jobs[0]);
}

std::vector<std::optional<remote_job>> remote_queue::submit_all(std::span<const remote_call> calls) {
  std::vector<std::optional<remote_job>> out;
  out.reserve(calls.size());
  // Bounded argument lists: a script's ARGV is unpacked on Redis's stack.
  constexpr std::size_t chunk = 512;
  for (std::size_t from = 0; from < calls.size(); from += chunk) {
    const auto part = calls.subspan(from, std::min(chunk, calls.size() - from));
    std::vector<std::string> args{impl_->keys.prefix, std::to_string(impl_->options.max_length),
                                  std::to_string(impl_->options.idempotency_ttl.count())};
    for (const auto& c : part) {
      if (c.options.deadline.count() < 0 || c.options.timeout.count() < 0)
        throw std::invalid_argument("a remote job's deadline and timeout cannot be negative");
      args.insert(args.end(), {c.task, c.args, impl_->reply_key, std::to_string(c.options.timeout.count()),
                               std::to_string(c.options.retries), std::to_string(c.options.deadline.count()),
                               c.options.idempotency_key});
    }
    const auto submitted_at = clock::now();
    const auto r = impl_->with_commands([&](remote::connection& conn) {
      return submit_script.run(conn, {impl_->keys.jobs}, args);
    });
    const auto& ids = remote::check(r, "the submit");
    if (remote::size(ids) != part.size()) throw queue_error("Redis answered a submit of " + std::to_string(part.size()) +
                                                           " jobs with " + std::to_string(remote::size(ids)) + " ids");
    for (std::size_t i = 0; i < part.size(); ++i) {
      std::string id = remote::text(remote::at(ids, i));
      std::optional<clock::time_point> deadline;
      if (part[i].options.deadline.count() > 0) deadline = submitted_at + part[i].options.deadline;
      if (id == "busy") {
        out.emplace_back();
      } else if (id.starts_with("!")) {  // the same key's answer is here already
        std::string_view job, answer;
        remote::split_answer_line(std::string_view(id).substr(1), job, answer);
        auto s = std::make_shared<remote_job::state>();
        s->id = std::string(job);
        s->answer = std::string(answer);
        out.emplace_back(remote_job(std::move(s)));
      } else {
        if (id.starts_with("=")) id.erase(0, 1);  // the same key's job, still to be answered
        out.emplace_back(remote_job(impl_->track(id, deadline)));
      }
    }
  }
  return out;
}

queue_stats remote_queue::stats() {
  return impl_->with_commands([&](remote::connection& c) {
    queue_stats s;
    s.length = static_cast<std::size_t>(remote::integer(remote::check(c.command({"XLEN", impl_->keys.jobs}), "XLEN")));
    s.dead = static_cast<std::size_t>(remote::integer(remote::check(c.command({"XLEN", impl_->keys.dead}), "XLEN")));
    const auto groups = c.command({"XINFO", "GROUPS", impl_->keys.jobs});
    const auto& g = remote::check(groups, "XINFO GROUPS");
    for (std::size_t i = 0; i < remote::size(g); ++i) {
      const auto& fields = remote::at(g, i);
      std::map<std::string, const redisReply*> by_name;
      for (std::size_t k = 0; k + 1 < remote::size(fields); k += 2) by_name[remote::text(remote::at(fields, k))] = &remote::at(fields, k + 1);
      if (by_name.count("name") && remote::text(*by_name["name"]) == remote::queue_keys::group && by_name.count("pending"))
        s.pending = static_cast<std::size_t>(remote::integer(*by_name["pending"]));
    }
    s.waiting = s.length > s.pending ? s.length - s.pending : 0;
    const auto consumers = c.command({"XINFO", "CONSUMERS", impl_->keys.jobs, std::string(remote::queue_keys::group)});
    const auto& list = remote::check(consumers, "XINFO CONSUMERS");
    for (std::size_t i = 0; i < remote::size(list); ++i) {
      const auto& fields = remote::at(list, i);
      queue_consumer q{};
      for (std::size_t k = 0; k + 1 < remote::size(fields); k += 2) {
        const std::string key = remote::text(remote::at(fields, k));
        const auto& v = remote::at(fields, k + 1);
        if (key == "name") q.name = remote::text(v);
        else if (key == "pending") q.pending = static_cast<std::size_t>(remote::integer(v));
        else if (key == "idle") q.idle = std::chrono::milliseconds(remote::integer(v));
      }
      s.consumers.push_back(std::move(q));
    }
    return s;
  });
}

std::vector<dead_letter> remote_queue::dead(std::size_t count) {
  return impl_->with_commands([&](remote::connection& c) {
    const auto r = c.command({"XRANGE", impl_->keys.dead, "-", "+", "COUNT", std::to_string(count)});
    const auto& entries = remote::check(r, "XRANGE");
    std::vector<dead_letter> out;
    for (std::size_t i = 0; i < remote::size(entries); ++i) {
      const auto& e = remote::at(entries, i);
      dead_letter d;
      d.id = remote::text(remote::at(e, 0));
      const auto& fields = remote::at(e, 1);
      for (std::size_t k = 0; k + 1 < remote::size(fields); k += 2) {
        const std::string key = remote::text(remote::at(fields, k));
        std::string v = remote::text(remote::at(fields, k + 1));
        if (key == "job") d.job = std::move(v);
        else if (key == "task") d.task = std::move(v);
        else if (key == "args") d.args = std::move(v);
        else if (key == "error") d.error = std::move(v);
        else if (key == "deliveries") d.deliveries = static_cast<unsigned>(std::strtoul(v.c_str(), nullptr, 10));
      }
      out.push_back(std::move(d));
    }
    return out;
  });
}

remote_job remote_queue::retry(std::string_view dead_id) {
  const auto r = impl_->with_commands([&](remote::connection& c) {
    return retry_script.run(c, {impl_->keys.jobs, impl_->keys.dead},
                            {std::string(dead_id), impl_->reply_key, impl_->keys.prefix,
                             std::to_string(impl_->options.idempotency_ttl.count())});
  });
  const auto& id = remote::check(r, "the retry");
  if (remote::is_nil(id)) throw std::invalid_argument("no dead letter " + std::string(dead_id) + " in " + impl_->keys.dead);
  return remote_job(impl_->track(remote::text(id), std::nullopt));
}

std::pair<std::size_t, std::size_t> remote_queue::purge() {
  constexpr std::size_t chunk = 1000;
  const std::string answer = control::error_answer(std::nullopt, "job_cancelled", "purged from the queue before any daemon took it");
  std::pair<std::size_t, std::size_t> dropped{0, 0};
  for (;;) {
    const auto r = impl_->with_commands([&](remote::connection& c) {
      return purge_script.run(c, {impl_->keys.jobs, impl_->keys.dead},
                              {std::string(remote::queue_keys::group), impl_->keys.prefix,
                               std::to_string(impl_->options.reply_ttl.count()), std::to_string(chunk), answer});
    });
    const auto& n = remote::check(r, "the purge");
    const auto jobs = static_cast<std::size_t>(remote::integer(remote::at(n, 0)));
    dropped.first += jobs;
    dropped.second += static_cast<std::size_t>(remote::integer(remote::at(n, 1)));
    if (jobs < chunk) return dropped;
  }
}

}  // namespace parallelcode
