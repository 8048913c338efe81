#include "redis.hpp"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include <hiredis.h>

namespace parallelcode::remote {

namespace {

timeval to_timeval(std::chrono::milliseconds d) {
  return {static_cast<time_t>(d.count() / 1000), static_cast<suseconds_t>(d.count() % 1000 * 1000)};
}

int parse_int(std::string_view s, const char* what, std::string_view url) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v < 0)
    throw std::invalid_argument("queue URL " + std::string(url) + ": the " + what + " is not a number");
  return v;
}

// %XX escapes, so a password may hold '@' or ':'.
std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      if (std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16).ptr == s.data() + i + 3) {
        out += static_cast<char>(v);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

std::vector<const char*> pointers(const std::vector<std::string>& args, std::vector<std::size_t>& lengths) {
  std::vector<const char*> p;
  p.reserve(args.size());
  lengths.clear();
  for (const auto& a : args) {
    p.push_back(a.data());
    lengths.push_back(a.size());
  }
  return p;
}

}  // namespace

redis_address redis_address::parse(std::string_view url) {
  redis_address a;
  if (url.starts_with("unix://")) {
    std::string_view rest = url.substr(7);
    if (const auto q = rest.find('?'); q != std::string_view::npos) {
      const std::string_view query = rest.substr(q + 1);
      rest = rest.substr(0, q);
      if (!query.starts_with("db=")) throw std::invalid_argument("queue URL " + std::string(url) + ": the only query is ?db=N");
      a.db = parse_int(query.substr(3), "db", url);
    }
    if (rest.empty() || rest[0] != '/') throw std::invalid_argument("queue URL " + std::string(url) + ": unix:// needs an absolute path");
    a.socket_path = std::string(rest);
    return a;
  }
  if (!url.starts_with("redis://"))
    throw std::invalid_argument("queue URL " + std::string(url) +
                                ": expected redis://[user@]host[:port][/db] or unix:///path/redis.sock[?db=N]");
  std::string_view rest = url.substr(8);
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view auth = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const auto colon = auth.find(':');
    a.user = unescape(auth.substr(0, colon));
    if (colon != std::string_view::npos) {
      a.password = unescape(auth.substr(colon + 1));
      a.password_in_url = true;
    }
  }
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    if (slash + 1 < rest.size()) a.db = parse_int(rest.substr(slash + 1), "db", url);
    rest = rest.substr(0, slash);
  }
  if (!rest.empty() && rest[0] == '[') {  // [::1]:6379
    const auto close = rest.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("queue URL " + std::string(url) + ": unclosed [");
    a.host = std::string(rest.substr(1, close - 1));
    rest = rest.substr(close + 1);
    if (rest.starts_with(":")) a.port = parse_int(rest.substr(1), "port", url);
  } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    a.host = std::string(rest.substr(0, colon));
    a.port = parse_int(rest.substr(colon + 1), "port", url);
  } else {
    a.host = std::string(rest);
  }
  if (a.host.empty()) throw std::invalid_argument("queue URL " + std::string(url) + ": no host");
  if (a.port < 1 || a.port > 65535) throw std::invalid_argument("queue URL " + std::string(url) + ": port out of range");
  return a;
}

std::string redis_address::display() const {
  std::string db_part = db ? std::to_string(db) : "";
  if (!socket_path.empty()) return "unix://" + socket_path + (db ? "?db=" + db_part : "");
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return "redis://" + (user.empty() ? "" : user + "@") + h + ":" + std::to_string(port) + (db ? "/" + db_part : "");
}

void reply_deleter::operator()(redisReply* r) const noexcept { freeReplyObject(r); }

connection::connection(const redis_address& a, std::chrono::milliseconds connect_timeout,
                       std::chrono::milliseconds io_timeout)
    : where_(a.display()) {
  context_.reset(a.socket_path.empty() ? redisConnectWithTimeout(a.host.c_str(), a.port, to_timeval(connect_timeout))
                                       : redisConnectUnixWithTimeout(a.socket_path.c_str(), to_timeval(connect_timeout)));
  if (!context_) throw queue_error("cannot reach Redis at " + where_ + ": out of memory");
  if (context_->err) fail("connecting");
  // Workers and plugins' children must not inherit our Redis sockets.
  ::fcntl(context_->fd, F_SETFD, FD_CLOEXEC);
  redisEnableKeepAlive(context_.get());
  redisSetTimeout(context_.get(), to_timeval(io_timeout));
  if (!a.password.empty()) {
    std::vector<std::string> auth{"AUTH"};
    if (!a.user.empty()) auth.push_back(a.user);
    auth.push_back(a.password);
    const auto r = command(auth);
    if (r->type == REDIS_REPLY_ERROR)
      throw credentials_refused("Redis at " + where_ + " refused the credentials: " + std::string(r->str, r->len));
  }
  const auto ping = command({"PING"});
  if (ping->type == REDIS_REPLY_ERROR) {
    const std::string why(ping->str, ping->len);
    if (why.starts_with("NOAUTH"))
      throw credentials_refused("Redis at " + where_ +
                                " wants a password: set PARALLELCODE_QUEUE_PASSWORD or --queue-password-file");
    if (why.starts_with("LOADING")) throw connection_lost("Redis at " + where_ + " is still loading its data");
    throw queue_error("Redis at " + where_ + " answered PING with: " + why);
  }
  if (a.db) check(command({"SELECT", std::to_string(a.db)}), "selecting the database");
}

connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&&) noexcept = default;
connection::~connection() = default;

void connection::context_deleter::operator()(redisContext* c) const noexcept { redisFree(c); }

void connection::fail(const char* doing) {
  std::string why = context_ ? context_->errstr : "no connection";
  if (context_ && context_->err == REDIS_ERR_IO && errno == EAGAIN) why = "no answer in time";
  throw connection_lost("cannot reach Redis at " + where_ + " (" + doing + "): " + why);
}

reply connection::command(const std::vector<std::string>& args) {
  append(args);
  return read_reply();
}

void connection::append(const std::vector<std::string>& args) {
  if (!context_ || context_->err) fail("sending");
  std::vector<std::size_t> lengths;
  const auto argv = pointers(args, lengths);
  if (redisAppendCommandArgv(context_.get(), static_cast<int>(argv.size()), const_cast<const char**>(argv.data()), lengths.data()) != REDIS_OK)
    fail("sending");
}

reply connection::read_reply() {
  if (!context_ || context_->err) fail("reading");
  void* r = nullptr;
  if (redisGetReply(context_.get(), &r) != REDIS_OK || !r) fail("reading");
  return reply(static_cast<redisReply*>(r));
}

const redisReply& check(const reply& r, std::string_view doing) {
  if (r->type == REDIS_REPLY_ERROR) {
    const std::string why = "Redis refused " + std::string(doing) + ": " + std::string(r->str, r->len);
    if (is_error(*r, "LOADING")) throw connection_lost(why);
    throw queue_error(why);
  }
  return *r;
}

bool is_error(const redisReply& r, std::string_view code) noexcept {
  return r.type == REDIS_REPLY_ERROR && std::string_view(r.str, r.len).starts_with(code);
}

bool is_nil(const redisReply& r) noexcept { return r.type == REDIS_REPLY_NIL; }
bool is_array(const redisReply& r) noexcept { return r.type == REDIS_REPLY_ARRAY; }

std::string text(const redisReply& r) {
  if (r.type == REDIS_REPLY_INTEGER) return std::to_string(r.integer);
  if (r.type == REDIS_REPLY_NIL) return {};
  if (r.type == REDIS_REPLY_ARRAY) throw queue_error("Redis answered an array where a string was expected");
  return std::string(r.str, r.len);
}

long long integer(const redisReply& r) {
  if (r.type == REDIS_REPLY_INTEGER) return r.integer;
  const std::string s = text(r);
  long long v = 0;
  if (std::from_chars(s.data(), s.data() + s.size(), v).ec != std::errc{})
    throw queue_error("Redis answered '" + s + "' where a number was expected");
  return v;
}

std::size_t size(const redisReply& r) noexcept { return r.type == REDIS_REPLY_ARRAY ? r.elements : 0; }

const redisReply& at(const redisReply& r, std::size_t i) {
  if (r.type != REDIS_REPLY_ARRAY || i >= r.elements) throw queue_error("Redis answered a shorter array than expected");
  return *r.element[i];
}

script::script(std::string_view source) : source_(source) {}

reply script::run(connection& c, const std::vector<std::string>& keys, const std::vector<std::string>& args) const {
  for (int attempt = 0;; ++attempt) {
    std::string sha;
    {
      std::lock_guard lock(mutex_);
      sha = sha_;
    }
    if (sha.empty()) {
      sha = text(check(c.command({"SCRIPT", "LOAD", source_}), "a script"));
      std::lock_guard lock(mutex_);
      sha_ = sha;
    }
    std::vector<std::string> argv{"EVALSHA", sha, std::to_string(keys.size())};
    argv.insert(argv.end(), keys.begin(), keys.end());
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = c.command(argv);
    if (attempt > 0 || !is_error(*r, "NOSCRIPT")) return r;
    std::lock_guard lock(mutex_);  // a restarted Redis has forgotten our scripts: load them again, once
    sha_.clear();
  }
}

std::string host_and_pid() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "localhost");
  return std::string(host) + ":" + std::to_string(::getpid());
}

}  // namespace parallelcode::remote
