#pragma once

// The CLI's Redis side: submit and map through a queue that daemons consume
// (parallelcode::remote_queue), and the queue verbs. Built only with Redis support
// (PARALLELCODE_HAVE_REMOTE). Each returns the exit status; a queue_error says why on
// stderr and is exit 3, std::invalid_argument is left to the caller.

#include <cstddef>
#include <string>

#include "output.hpp"

namespace parallelcode::cli {

struct queue_target {
  std::string url;  // --queue, or PARALLELCODE_QUEUE
  std::string name = "default";
  std::string password_file;  // empty: PARALLELCODE_QUEUE_PASSWORD, else the URL's
};

int remote_submit(const queue_target& target, const std::string& task, const std::string& args, const job_flags& flags);
// As map on a socket: at most `window` jobs in flight, answers in input order; a
// full queue is waited out, never a failed line.
int remote_map(const queue_target& target, const std::string& task, const job_flags& flags, const map_settings& how,
               std::size_t window);

int show_stats(const queue_target& target, bool json);
int show_dead(const queue_target& target, std::size_t count, bool json);
// Prints the new job's id, or with wait its answer as submit does.
int retry_dead(const queue_target& target, const std::string& dead_id, bool wait, bool raw);
int purge_queue(const queue_target& target, bool json);

}  // namespace parallelcode::cli
