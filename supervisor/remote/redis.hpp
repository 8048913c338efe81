#pragma once

// One Redis connection through hiredis, as a move-only type, and the URL that names
// it. Every failure to talk is a queue_error; a connection that threw one is broken
// and is replaced, never reused (hiredis leaves it in no usable state).

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <parallelcode/remote.hpp>

struct redisContext;
struct redisReply;

namespace parallelcode::remote {

// redis://[user[:password]@]host[:port][/db] or unix:///path/redis.sock[?db=N]
struct redis_address {
  std::string host;  // empty for a Unix socket
  int port = 6379;
  std::string socket_path;
  std::string user;
  std::string password;
  bool password_in_url = false;
  int db = 0;

  // std::invalid_argument for anything else.
  static redis_address parse(std::string_view url);
  // The URL again, without its password: for logs and status.
  std::string display() const;
};

// Redis answered, but refused who we are: trying again will not help.
class credentials_refused : public queue_error {
 public:
  using queue_error::queue_error;
};

// The connection broke, timed out, or Redis is still loading its data: it may come back.
class connection_lost : public queue_error {
 public:
  using queue_error::queue_error;
};

struct reply_deleter {
  void operator()(redisReply* r) const noexcept;
};
using reply = std::unique_ptr<redisReply, reply_deleter>;

class connection {
 public:
  // Connects, authenticates and selects the database; queue_error if any fails.
  // io_timeout bounds every read after that (a blocking read must ask for less).
  connection(const redis_address& where, std::chrono::milliseconds connect_timeout,
             std::chrono::milliseconds io_timeout);
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  ~connection();

  // One command; its reply, which may be an error reply (see check()).
  reply command(const std::vector<std::string>& args);
  // Pipelining: queue commands, then read their replies in order.
  void append(const std::vector<std::string>& args);
  reply read_reply();

 private:
  struct context_deleter {
    void operator()(redisContext* c) const noexcept;
  };
  [[noreturn]] void fail(const char* doing);
  // Owned from the first line of the constructor: one that throws frees it too.
  std::unique_ptr<redisContext, context_deleter> context_;
  std::string where_;
};

// r itself, unless it is an error reply: then queue_error with Redis's words
// (connection_lost for LOADING: a restarted Redis reading its AOF).
const redisReply& check(const reply& r, std::string_view doing);

// An error reply whose text starts with code (NOGROUP, BUSYGROUP, NOSCRIPT).
bool is_error(const redisReply& r, std::string_view code) noexcept;

// The parts of a reply the queue reads.
bool is_nil(const redisReply& r) noexcept;
bool is_array(const redisReply& r) noexcept;
std::string text(const redisReply& r);  // a string, status or integer as text
long long integer(const redisReply& r);  // an integer, or a string holding one
std::size_t size(const redisReply& r) noexcept;  // elements of an array
const redisReply& at(const redisReply& r, std::size_t i);  // queue_error past the end

// A Lua script of scripts/, loaded on first use and again after a Redis restart
// (NOSCRIPT): EVALSHA from then on.
class script {
 public:
  explicit script(std::string_view source);
  reply run(connection& c, const std::vector<std::string>& keys, const std::vector<std::string>& args) const;

 private:
  std::string source_;
  mutable std::mutex mutex_;
  mutable std::string sha_;  // once loaded
};

// A submitter's or a daemon's name for itself: host:pid, unique on one Redis.
std::string host_and_pid();

}  // namespace parallelcode::remote
