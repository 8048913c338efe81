#include "keys.hpp"

#include <cstdlib>
#include <stdexcept>

namespace parallelcode::remote {

queue_keys::queue_keys(std::string_view n) : name(n) {
  if (n.empty() || n.size() > 128 || n.find_first_of("{} \t\r\n") != std::string_view::npos)
    throw std::invalid_argument("queue name '" + std::string(n) + "': 1 to 128 bytes, without braces or blanks");
  prefix = "pc:{" + name + "}:";
  jobs = prefix + "jobs";
  dead = prefix + "dead";
}

void ensure_group(connection& c, const queue_keys& keys) {
  const auto r = c.command({"XGROUP", "CREATE", keys.jobs, std::string(queue_keys::group), "0", "MKSTREAM"});
  if (is_error(*r, "BUSYGROUP")) return;
  check(r, "creating the consumer group");
}

bool split_answer_line(std::string_view line, std::string_view& id, std::string_view& answer) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos || space == 0) return false;
  id = line.substr(0, space);
  answer = line.substr(space + 1);
  return true;
}

std::int64_t redis_time_ms(connection& c) {
  const auto r = c.command({"TIME"});
  const auto& t = check(r, "TIME");
  return integer(at(t, 0)) * 1000 + integer(at(t, 1)) / 1000;
}

std::string password_from_environment() {
  const char* p = std::getenv("PARALLELCODE_QUEUE_PASSWORD");
  return p ? p : "";
}

}  // namespace parallelcode::remote
