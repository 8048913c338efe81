#pragma once

// The Redis names of one queue, and what both of its ends do with them: every key
// under one hash tag, pc:{NAME}:…, so a cluster keeps a queue on one slot.

#include <chrono>
#include <string>
#include <string_view>

#include "redis.hpp"

namespace parallelcode::remote {

struct queue_keys {
  // std::invalid_argument for a name that is empty, has braces or blanks, or is over 128 bytes.
  explicit queue_keys(std::string_view name);

  std::string name;
  std::string prefix;  // pc:{NAME}:
  std::string jobs;    // the job stream
  std::string dead;    // the dead-letter stream
  static constexpr std::string_view group = "daemons";

  std::string reply(std::string_view submitter) const { return prefix + "reply:" + std::string(submitter); }
};

// The consumer group, made with its stream if neither is there yet.
void ensure_group(connection& c, const queue_keys& keys);

// A reply list's element, "ID ANSWER", cut in two; false if it is not one.
bool split_answer_line(std::string_view line, std::string_view& id, std::string_view& answer);

// Milliseconds by Redis's clock: deadlines are set and checked by the one clock all machines share.
std::int64_t redis_time_ms(connection& c);

// PARALLELCODE_QUEUE_PASSWORD, if set.
std::string password_from_environment();

}  // namespace parallelcode::remote
