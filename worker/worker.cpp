// The worker process: take a job frame, run it, write its result frame. With
// concurrency K, K threads share the two rings, one reading and one writing at a time.

#include <cxxabi.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <typeinfo>
#include <utility>

#include <parallelcode/detail/codec.hpp>
#include <parallelcode/detail/invoke.hpp>

#include "demangle.hpp"
#include "frame.hpp"
#include "process_title.hpp"
#include "statm.hpp"
#include "tracked.hpp"
#include "unique_fd.hpp"
#include "wake.hpp"
#include "worker_entry.hpp"

namespace parallelcode::detail {

namespace {

using namespace std::chrono_literals;

constexpr auto spin_budget = 50us;
constexpr auto sleep_slice = 1s;  // a sleeping worker re-checks its parent this often
constexpr int exit_protocol = 76;  // EX_PROTOCOL: the job ring held garbage
constexpr int exit_no_threads = 71;  // EX_OSERR: no thread to run with
constexpr int exit_init_failed = 70;  // EX_SOFTWARE: options::worker_init threw
constexpr int exit_fd_lost = 74;  // EX_IOERR: a job closed or replaced one of the worker's own fds
constexpr std::size_t keep_result_bytes = std::size_t{4} << 20;

// The worker's own fds live from here up: past FD_SETSIZE and past the loops to 1023
// that daemon-style code runs to close what it did not open.
constexpr int high_fd_base = 1024;
constexpr int high_fd_room = 16;

// Moves fd to high_fd_base or up. A lower soft RLIMIT_NOFILE is raised just for the
// move: above the job's limit, its open() and dup2() cannot land on our fds at all.
int move_high(int fd) noexcept {
  rlimit saved{};
  if (::getrlimit(RLIMIT_NOFILE, &saved) != 0) return fd;
  const rlim_t wanted = high_fd_base + high_fd_room;
  rlim_t limit = saved.rlim_cur;
  if (limit < wanted && saved.rlim_max >= wanted) {
    const rlimit raised{wanted, saved.rlim_max};
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = wanted;
  }
  const int base = limit >= wanted ? high_fd_base : std::max(3, static_cast<int>(limit) - high_fd_room);
  const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, base);
  if (limit != saved.rlim_cur) ::setrlimit(RLIMIT_NOFILE, &saved);
  if (high < 0) return fd;  // stays where it is, still checked before each use
  ::close(fd);
  return high;
}

// One fd of the worker's own, checked before each use: a job may close any fd, and
// its next file may get that number. An eventfd's inode is the one anonymous inode
// the kernel shares, so that check tells it from a file, pipe or socket, not from
// another eventfd. Tracked (unique_fd): a pool a job starts here drops it in its workers.
class own_fd {
 public:
  own_fd() = default;
  explicit own_fd(int fd) noexcept {
    if (fd < 0) return;
    fd_.reset(move_high(fd));
    struct stat st{};
    if (::fstat(fd_.get(), &st) != 0) {
      fd_.reset();
      return;
    }
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }

  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

  // The fd, if it is still the one we opened; if not, the worker leaves, never touching a job's file.
  int get() const noexcept {
    struct stat st{};
    if (::fstat(fd_.get(), &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_) ::_exit(exit_fd_lost);
    return fd_.get();
  }

 private:
  unique_fd fd_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Error reports stay small whatever max_payload is: the supervisor reads them up to frame_limit().
std::string clip(std::string s) {
  if (s.size() > error_text_limit) s.resize(error_text_limit);
  return s;
}

class worker {
 public:
  // Takes its fds before any user code runs (worker_init may close or reopen fds too).
  explicit worker(const worker_start& s)
      : start_(s), doorbell_(s.doorbell), in_(s.shm->in(s.channel)), out_(s.shm->out(s.channel)) {
    if (s.max_rss) statm_ = own_fd(::open("/proc/self/statm", O_RDONLY | O_CLOEXEC));
  }

  void say_ready() {
    std::lock_guard lock(out_mutex_);
    frame_header ready = make_header(frame_type::ready, 0, 0);
    ready.rss = rss();  // what it starts with: max_worker_rss counts what it gains after
    send(ready, nullptr);
  }

  [[noreturn]] void serve() {
    frame_reader reader(start_.max_payload, true);  // the pool wrote it
    byte_buffer result;
    for (;;) {
      std::unique_lock lock(in_mutex_);
      take(reader);
      const frame_header& h = reader.header();
      frame_header reply;
      if (reader.streaming()) {
        ring_stream stream(*this, h, std::move(lock));
        input_archive data(stream, h.size);
        reply = run(h, data, result);
        stream.done();  // if the decode failed before it got there
      } else {
        lock.unlock();
        input_archive data(reader.payload(), h.size);
        reply = run(h, data, result);
      }
      reader.next();
      reader.trim();
      {
        std::lock_guard out_lock(out_mutex_);
        send(reply, result.data());
      }
      if (result.capacity() > keep_result_bytes) result.release();
    }
  }

 private:
  // The payload of a big job frame (bigger than the ring, or of frame_reader::stream_from
  // bytes or more), read in place as the pool writes it: the job decodes straight from
  // the ring, with no buffer of its size. Holds the ring's lock until the frame is all read.
  class ring_stream final : public byte_source {
   public:
    ring_stream(worker& w, const frame_header& h, std::unique_lock<std::mutex> lock)
        : w_(w), left_(h.size), padding_(frame_bytes(h.size) - sizeof(frame_header) - h.size), lock_(std::move(lock)) {}
    ring_stream(const ring_stream&) = delete;
    ring_stream& operator=(const ring_stream&) = delete;
    ~ring_stream() = default;

    std::pair<const std::byte*, std::size_t> next(std::size_t most) override {
      const auto piece = wait_piece(std::min<std::uint64_t>(most, left_));
      left_ -= piece.second;
      return piece;
    }

    // Skips what the job did not read (all of it, when its decode failed) and the padding.
    void done() override {
      if (!lock_) return;
      for (std::uint64_t rest = left_ + padding_; rest > 0;) rest -= wait_piece(rest).second;
      give_back();
      lock_.unlock();
    }

   private:
    // The next bytes in the ring, up to `most`; what the last call gave is handed back first.
    std::pair<const std::byte*, std::size_t> wait_piece(std::uint64_t most) {
      give_back();
      while (w_.in_.empty()) w_.wait_readable();
      const auto piece = w_.in_.contiguous(most);
      held_ = piece.second;
      return piece;
    }
    void give_back() {
      w_.in_.skip(std::exchange(held_, 0));
      w_.give_back();
    }

    worker& w_;
    std::uint64_t left_;  // payload bytes not yet handed to the decoder
    std::uint64_t padding_;
    std::uint64_t held_ = 0;  // bytes the last piece lent out, still in the ring
    std::unique_lock<std::mutex> lock_;
  };

  // Reads one whole job frame, or the header of one to stream, sleeping while the ring is empty.
  void take(frame_reader& reader) {
    for (;;) {
      bool whole = false;
      try {
        whole = reader.poll(in_, true);
      } catch (const protocol_error&) {
        ::_exit(exit_protocol);
      }
      // A job handed ahead is claimed before its bytes are given back: the pool
      // may have stolen it back for another worker meanwhile.
      const bool ahead = whole && !reader.streaming() && (reader.header().flags & frame_ahead);  // never streamed
      const bool stolen = ahead && !settle_ahead(in_.at(in_.position() - frame_bytes(reader.header().size)),
                                                  frame_claimed);
      if (stolen) reader.next();
      give_back();
      if (stolen) continue;
      if (whole) {
        if (ahead) wake_supervisor();  // it has started
        return;
      }
      wait_readable();
    }
  }

  // Gives what was read of the job ring back: the supervisor may be waiting for room
  // to stream the rest of a big job.
  void give_back() {
    if (in_.release() && in_.control().producer_waiting.load() && in_.control().producer_waiting.exchange(0))
      wake_supervisor();
  }

  void wake_supervisor() const {
    if (!take_sleeper(start_.shm->supervisor_sleeping())) return;
    // EBADF: a job's thread closed it between the check and the write.
    if (::eventfd_write(doorbell_.get(), 1) != 0 && errno == EBADF) ::_exit(exit_fd_lost);
  }

  // Resident bytes now, for max_worker_rss; 0 when nobody asked.
  std::uint64_t rss() const { return statm_ ? resident_bytes(statm_.get()) : 0; }

  frame_header run(const frame_header& h, input_archive& data, byte_buffer& out) {
    if (h.type != frame_type::job) ::_exit(exit_protocol);
    out.clear();
    frame_type type = frame_type::result;
    try {
      reinterpret_cast<invoke_fn>(h.invoke)(h.fn, data, out);
      if (out.size() > start_.max_payload)
        throw codec_error("the result is " + std::to_string(out.size()) + " bytes, over max_payload (" +
                          std::to_string(start_.max_payload) + ")");
    } catch (const codec_error& e) {
      type = frame_type::payload_error;
      out.clear();
      encode(out, clip(e.what()));
    } catch (const std::exception& e) {
      type = frame_type::failed;
      out.clear();
      encode(out, std::make_pair(clip(demangle(typeid(e).name())), clip(e.what())));
    } catch (...) {
      type = frame_type::failed;
      out.clear();
      const std::type_info* t = abi::__cxa_current_exception_type();
      encode(out, std::make_pair(clip(t ? demangle(t->name()) : std::string("unknown exception")), std::string()));
    }
    frame_header reply = make_header(type, h.job, out.size());
    reply.rss = rss();
    return reply;
  }

  void send(const frame_header& h, const std::byte* payload) {
    const std::uint64_t total = frame_bytes(h.size);
    std::uint64_t sent = 0;
    for (;;) {
      const std::uint64_t now = write_frame(out_, h, payload, sent);
      if (now != sent) {
        out_.publish();
        wake_supervisor();
        sent = now;
      }
      if (sent == total) return;
      wait_writable(sent == 0 ? std::min(total, out_.capacity()) : 1);
    }
  }

  void wait_readable() {
    if (spin_until([&] { return !in_.empty(); }, spin_budget)) return;
    auto& sleeping = in_.control().consumer_sleeping;
    sleeping.store(1, std::memory_order_seq_cst);
    if (in_.empty()) futex_wait(sleeping, 1, sleep_slice);
    sleeping.store(0, std::memory_order_relaxed);
    check_parent();
  }

  void wait_writable(std::uint64_t need) {
    if (spin_until([&] { return out_.free_space() >= need; }, spin_budget)) return;
    auto& waiting = out_.control().producer_waiting;
    waiting.store(1, std::memory_order_seq_cst);
    if (out_.free_space() < need) futex_wait(waiting, 1, sleep_slice);
    waiting.store(0, std::memory_order_relaxed);
    check_parent();
  }

  void check_parent() const {
    if (::getppid() != start_.fork_server) ::_exit(0);
  }

  const worker_start start_;
  own_fd doorbell_;  // eventfd the supervisor sleeps on
  own_fd statm_;     // /proc/self/statm, when max_worker_rss asks for RSS
  ring_reader in_;
  ring_writer out_;
  std::mutex in_mutex_;
  std::mutex out_mutex_;
};

}  // namespace

void run_worker(const worker_start& start) {
  // Die with the fork server; it may have died before the line above took effect.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != start.fork_server) ::_exit(0);
  set_process_title(("pc-worker-" + std::to_string(start.id)).c_str(),
                    ("parallelcode: worker " + std::to_string(start.id)).c_str());
  // Ours alone: a pool a job starts here must not hand our rings to its workers.
  track_mapping(start.shm->address(), start.shm->bytes());

  // On the heap, one per run_worker(): a pool a job starts here forks its workers from
  // this process, and each of them needs a worker of its own, not a copy of ours. Never
  // freed: the threads below use it until the process ends.
  auto* w = new worker(start);
  if (start.init) {
    try {
      start.init(start.id);
    } catch (...) {
      ::_exit(exit_init_failed);
    }
    // A credential change in worker_init (dropping privileges) cleared the parent-death signal.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != start.fork_server) ::_exit(0);
  }
  w->say_ready();
  try {
    for (unsigned i = 1; i < start.concurrency; ++i) std::thread([w] { w->serve(); }).detach();
  } catch (...) {
    ::_exit(exit_no_threads);
  }
  w->serve();
}

}  // namespace parallelcode::detail
