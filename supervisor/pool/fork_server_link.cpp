// fork_server_link: starting and losing the fork server with backoff, requests out, reports in.

#include "fork_server_link.hpp"

#include <algorithm>
#include <utility>

#include "backoff.hpp"

namespace parallelcode::detail {

namespace {
using namespace std::chrono_literals;
constexpr auto check_every = 1ms;  // a busy pool reads the fork server's socket at least this often
constexpr auto request_retry = 1ms;
constexpr unsigned attempts = 5;
}  // namespace

void add_to_epoll(int epoll, int fd);  // pool.cpp

void fork_server_link::reset() noexcept {
  server_.reset();
  requests_.clear();
  requests_added_ = false;
  restart_at_.reset();
  check_ = true;
  young_deaths_ = 0;
}

void fork_server_link::start(const fork_server_config& config, int epoll) {
  try {
    server_.emplace(config);
    add_to_epoll(epoll, server_->socket());  // a pool that cannot watch it has no fork server
  } catch (...) {
    server_.reset();
    throw;
  }
  check_ = true;
  requests_.clear();
}

bool fork_server_link::retry_later() {
  if (++young_deaths_ >= attempts) return false;
  restart_at_ = clock::now() + backoff_delay(young_deaths_ + 1);
  return true;
}

std::chrono::milliseconds fork_server_link::lost() noexcept {
  const auto lived = clock::now() - server_->started_at();
  server_->stop(0ms);  // reaps it
  server_.reset();
  requests_.clear();
  young_deaths_ = lived < young ? young_deaths_ + 1 : 0;
  const auto delay = backoff_delay(young_deaths_);
  if (delay > 0ms) restart_at_ = clock::now() + delay;
  return delay;
}

bool fork_server_link::restart_due(clock::time_point now) noexcept {
  if (!restart_at_ || now < *restart_at_) return false;
  restart_at_.reset();
  return true;
}

std::optional<fork_server> fork_server_link::release() noexcept { return std::exchange(server_, std::nullopt); }

void fork_server_link::request(const fs_request& r) {
  requests_.push_back(r);
  requests_added_ = true;
}

void fork_server_link::flush() noexcept {
  while (!requests_.empty() && server_) {
    if (server_->request(requests_.front()) != fork_server::send_status::sent) return;  // full, or gone: seen next step
    requests_.pop_front();
  }
}

bool fork_server_link::take_requests_added() noexcept { return std::exchange(requests_added_, false); }

bool fork_server_link::reports_due(std::uint32_t reports, clock::time_point now) noexcept {
  // A socket read is a system call: a busy pool makes it only when it has to.
  if (!server_ || (reports == reports_seen_ && !check_ && now < next_check_)) return false;
  reports_seen_ = reports;
  check_ = false;
  next_check_ = now + check_every;
  return true;
}

fork_server_link::clock::time_point fork_server_link::next_timer() const noexcept {
  auto at = restart_at_.value_or(clock::time_point::max());
  if (!requests_.empty()) at = std::min(at, clock::now() + request_retry);  // the socket was full: retry soon
  return at;
}

}  // namespace parallelcode::detail
