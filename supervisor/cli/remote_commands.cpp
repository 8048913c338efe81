#include "remote_commands.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <parallelcode/remote.hpp>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "protocol.hpp"
#include "units.hpp"

namespace parallelcode::cli {

namespace {

namespace ctl = parallelcode::control;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

// How long to wait before offering a full queue the same jobs again: 10ms, doubling to 500ms.
class backoff {
 public:
  milliseconds next() {
    const milliseconds d = delay_;
    delay_ = std::min(delay_ * 2, milliseconds{500});
    return d;
  }
  void reset() { delay_ = milliseconds{10}; }

 private:
  milliseconds delay_{10};
};

// A full queue is waited out: it is no failure of the job.
template <class Submit>
remote_job until_taken(Submit submit) {
  for (backoff wait;;) {
    try {
      return submit();
    } catch (const queue_busy&) {
      std::this_thread::sleep_for(wait.next());
    }
  }
}

// Runs one command on a connection to the target's queue; Redis failing, now or later, is exit 3.
template <class Command>
int with_queue(const queue_target& target, Command command) {
  remote_options options;
  options.name = target.name;
  if (!target.password_file.empty()) options.password = ctl::read_password_file(target.password_file);
  // From the environment it is no one else's to see; on the command line it is.
  const char* from_env = std::getenv("PARALLELCODE_QUEUE");
  if (ctl::url_has_password(target.url) && !(from_env && target.url == from_env))
    std::cerr << "parallelcode: warning: the --queue URL holds a password, which ps shows to every user; "
                 "put it in PARALLELCODE_QUEUE_PASSWORD or --queue-password-file instead\n";
  try {
    remote_queue queue(target.url, std::move(options));
    return command(queue);
  } catch (const queue_error& e) {
    std::cerr << "parallelcode: " << e.what() << "\n";
    return exit_unreachable;
  }
}

remote_job_options job_options(const job_flags& flags) {
  remote_job_options o;
  if (!flags.timeout.empty()) o.timeout = milliseconds_of(flags.timeout);
  o.retries = flags.retries;
  if (!flags.deadline.empty()) o.deadline = milliseconds_of(flags.deadline);
  o.idempotency_key = flags.idempotency_key;
  return o;
}

// The job's answer, parsed into `response`; blocks until it comes.
std::string answer_of(const remote_job& job, rapidjson::Document& response) {
  std::string body = job.answer();
  if (auto bad = ctl::parse(body, response))
    throw queue_error("the answer to job " + job.id() + " is not JSON: " + *bad);
  return body;
}

int print_remote_answer(const remote_job& job, bool raw) {
  rapidjson::Document response;
  const std::string body = answer_of(job, response);
  return print_answer(body, response, raw);
}

using json_out = rapidjson::Writer<rapidjson::StringBuffer>;

// Through quote(): what Redis holds need not be UTF-8.
void put_string(json_out& out, std::string_view s) {
  const std::string text = ctl::quote(s);
  out.RawValue(text.data(), text.size(), rapidjson::kStringType);
}

// A job's arguments as they were written, if they are JSON, else as a string.
void put_json(json_out& out, std::string_view text) {
  rapidjson::Document check;
  if (ctl::parse(text, check)) return put_string(out, text);
  out.RawValue(text.data(), text.size(), check.GetType());
}

std::string one_line(std::string s) {
  std::replace_if(s.begin(), s.end(), [](char c) { return c == '\n' || c == '\r' || c == '\t'; }, ' ');
  return s;
}

std::string count_of(std::size_t n, const char* thing) {
  return std::to_string(n) + " " + thing + (n == 1 ? "" : "s");
}

}  // namespace

int remote_submit(const queue_target& target, const std::string& task, const std::string& args, const job_flags& flags) {
  if (!check_arguments(args)) return exit_refused;
  const remote_job_options options = job_options(flags);
  const auto asked = steady::now();
  return with_queue(target, [&](remote_queue& queue) {
    const remote_job job = until_taken([&] {
      remote_job_options o = options;
      // The deadline counts from the command, not from the end of a wait on a full queue.
      if (o.deadline.count())
        o.deadline = std::max(milliseconds{1}, o.deadline - std::chrono::ceil<milliseconds>(steady::now() - asked));
      return queue.submit(task, args, o);
    });
    return print_remote_answer(job, flags.raw);
  });
}

int remote_map(const queue_target& target, const std::string& task, const job_flags& flags, const map_settings& how,
               std::size_t window) {
  const remote_job_options options = job_options(flags);
  return with_queue(target, [&](remote_queue& queue) {
    ordered_output out(how);
    map_input in(out, how);
    if (in.total()) out.expect(*in.total());
    job_log log(how.joblog);
    bool halting = false;
    struct batch {
      std::vector<std::size_t> lines;
      std::vector<remote_call> calls;
    };
    std::map<std::size_t, remote_job> flying;  // by input line
    batch refused;                             // by a full queue: offered again at `again`
    steady::time_point again;
    backoff busy;
    // Fewer lines a round trip than this only when the oldest job keeps the rest waiting.
    const std::size_t min_batch = std::max<std::size_t>(1, window / 4);
    bool stalled = false;
    for (;;) {
      batch next;
      if (!refused.calls.empty()) {
        if (steady::now() >= again) std::swap(next, refused);
      } else if (const std::size_t room = window - flying.size();
                 !halting && (room >= min_batch || flying.empty() || stalled)) {
        while (next.calls.size() < room) {
          auto line = in.next();
          if (!line) break;
          next.lines.push_back(line->first);
          next.calls.push_back({.task = task, .args = std::move(line->second), .options = options});
        }
      }
      if (!next.calls.empty()) {
        auto jobs = queue.submit_all(next.calls);
        for (std::size_t k = 0; k < jobs.size(); ++k) {
          if (jobs[k]) {
            log.sent(next.lines[k]);
            flying.emplace(next.lines[k], std::move(*jobs[k]));
          } else {
            refused.lines.push_back(next.lines[k]);
            refused.calls.push_back(std::move(next.calls[k]));
          }
        }
        // The queue took some: it is draining, so offer the rest again soon.
        if (refused.calls.size() < next.calls.size()) busy.reset();
        if (!refused.calls.empty()) again = steady::now() + busy.next();
      }
      if (flying.empty()) {
        if (refused.calls.empty() && (halting || in.done())) break;
        std::this_thread::sleep_until(again);
        continue;
      }
      milliseconds limit{20};
      if (!refused.calls.empty())
        limit = std::clamp(std::chrono::ceil<milliseconds>(again - steady::now()), milliseconds{0}, limit);
      stalled = !flying.begin()->second.wait_for(limit);
      // Answers in order from the oldest; after a stall every one that came, to free the window.
      for (auto it = flying.begin(); it != flying.end();) {
        if (!it->second.wait_for(milliseconds{0})) {
          if (!stalled) break;
          ++it;
          continue;
        }
        rapidjson::Document response;
        const std::string body = answer_of(it->second, response);
        log.answered(it->first, response);
        auto [text, failed] = map_line(body, response, flags.raw);
        out.add(it->first, std::move(text), failed);
        it = flying.erase(it);
      }
      out.running(flying.size() + refused.calls.size());
      if (how.halt.at != halt_policy::when::never && out.failed() >= how.halt.failures) {
        halting = true;
        refused = {};
        // A queue cannot take a job back: with now, the ones out still run, unread.
        if (how.halt.at == halt_policy::when::now) break;
      }
    }
    const int status = out.finish();
    if (halting) {
      std::cerr << "parallelcode: --halt: " << out.failed() << " lines failed, stopped\n";
      return exit_failed;
    }
    return status;
  });
}

int show_stats(const queue_target& target, bool json) {
  return with_queue(target, [&](remote_queue& queue) {
    const queue_stats s = queue.stats();
    if (json) {
      rapidjson::StringBuffer text;
      json_out out(text);
      out.StartObject();
      out.Key("url");
      put_string(out, queue.where());
      out.Key("name");
      put_string(out, target.name);
      out.Key("length");
      out.Uint64(s.length);
      out.Key("waiting");
      out.Uint64(s.waiting);
      out.Key("pending");
      out.Uint64(s.pending);
      out.Key("dead");
      out.Uint64(s.dead);
      out.Key("consumers");
      out.StartArray();
      for (const auto& c : s.consumers) {
        out.StartObject();
        out.Key("name");
        put_string(out, c.name);
        out.Key("pending");
        out.Uint64(c.pending);
        out.Key("idle_ms");
        out.Int64(c.idle.count());
        out.EndObject();
      }
      out.EndArray();
      out.EndObject();
      std::cout << text.GetString() << "\n";
      return 0;
    }
    std::cout << "queue " << target.name << " at " << queue.where() << ": " << count_of(s.length, "job") << " ("
              << s.waiting << " waiting, " << s.pending << " pending), " << count_of(s.dead, "dead letter") << "\n";
    if (!s.consumers.empty()) std::printf("%-40s %8s %8s\n", "consumer", "pending", "idle");
    for (const auto& c : s.consumers)
      std::printf("%-40s %8zu %8s\n", c.name.c_str(), c.pending, duration_text(c.idle.count()).c_str());
    return 0;
  });
}

int show_dead(const queue_target& target, std::size_t count, bool json) {
  return with_queue(target, [&](remote_queue& queue) {
    const std::vector<dead_letter> letters = queue.dead(count);
    if (json) {
      rapidjson::StringBuffer text;
      json_out out(text);
      out.StartArray();
      for (const auto& d : letters) {
        out.StartObject();
        out.Key("id");
        put_string(out, d.id);
        out.Key("job");
        put_string(out, d.job);
        out.Key("task");
        put_string(out, d.task);
        out.Key("args");
        put_json(out, d.args);
        out.Key("deliveries");
        out.Uint(d.deliveries);
        out.Key("error");
        put_string(out, d.error);
        out.EndObject();
      }
      out.EndArray();
      std::cout << text.GetString() << "\n";
      return 0;
    }
    if (!letters.empty()) std::printf("%-20s %-20s %-20s %10s  %s\n", "id", "job", "task", "deliveries", "error");
    for (const auto& d : letters)
      std::printf("%-20s %-20s %-20s %10u  %s\n", d.id.c_str(), d.job.c_str(), d.task.c_str(), d.deliveries,
                  one_line(d.error).c_str());
    return 0;
  });
}

int retry_dead(const queue_target& target, const std::string& dead_id, bool wait, bool raw) {
  return with_queue(target, [&](remote_queue& queue) {
    const remote_job job = until_taken([&] { return queue.retry(dead_id); });
    if (wait) return print_remote_answer(job, raw);
    std::cout << job.id() << "\n";
    return 0;
  });
}

int purge_queue(const queue_target& target, bool json) {
  return with_queue(target, [&](remote_queue& queue) {
    const auto [jobs, dead] = queue.purge();
    if (json) {
      rapidjson::StringBuffer text;
      json_out out(text);
      out.StartObject();
      out.Key("jobs");
      out.Uint64(jobs);
      out.Key("dead");
      out.Uint64(dead);
      out.EndObject();
      std::cout << text.GetString() << "\n";
    } else {
      std::cout << "purged " << count_of(jobs, "waiting job") << " and " << count_of(dead, "dead letter") << "\n";
    }
    return 0;
  });
}

}  // namespace parallelcode::cli
