#include "progress.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>

namespace parallelcode::cli {

namespace {

bool same_terminal(int a, int b) {
  struct stat sa{}, sb{};
  return ::isatty(a) && ::isatty(b) && ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_rdev == sb.st_rdev;
}

std::string eta_text(double seconds) {
  char s[32];
  const long long t = static_cast<long long>(seconds + 0.5);
  if (t < 3600) std::snprintf(s, sizeof s, "%lld:%02lld", t / 60, t % 60);
  else std::snprintf(s, sizeof s, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
  return s;
}

}  // namespace

progress::progress(bool shown)
    : shown_(shown), terminal_(::isatty(STDERR_FILENO)), shares_stdout_(same_terminal(STDOUT_FILENO, STDERR_FILENO)) {}

void progress::update(std::size_t done, std::size_t failed, std::size_t running) {
  if (!shown_) return;
  const auto now = clock::now();
  if (now < next_draw_) return;
  next_draw_ = now + std::chrono::milliseconds(100);
  draw(done, failed, running, false);
}

void progress::clear() {
  if (!drawn_ || !shares_stdout_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  drawn_ = false;
  next_draw_ = clock::now();  // the bar comes back with the next update
}

void progress::finish(std::size_t done, std::size_t failed) {
  if (!shown_) return;
  std::cout.flush();
  draw(done, failed, 0, true);
}

void progress::draw(std::size_t done, std::size_t failed, std::size_t running, bool last) {
  if (shares_stdout_) std::cout.flush();  // results before the bar, never through it
  const double elapsed = std::chrono::duration<double>(clock::now() - started_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0;
  std::string line;
  char part[128];
  if (total_ && *total_ > 0) {
    const int width = 24;
    const int filled = static_cast<int>(width * std::min(1.0, static_cast<double>(done) / static_cast<double>(*total_)));
    line = "[" + std::string(static_cast<std::size_t>(filled), '#') + std::string(static_cast<std::size_t>(width - filled), ' ') + "] ";
    std::snprintf(part, sizeof part, "%3d%% %zu/%zu done", static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(*total_)),
                  done, *total_);
  } else {
    std::snprintf(part, sizeof part, "%zu done", done);
  }
  line += part;
  std::snprintf(part, sizeof part, ", %zu failed, %zu running, %.0f jobs/s", failed, running, rate);
  line += part;
  if (total_ && !last && rate > 0 && done < *total_)
    line += ", ETA " + eta_text(static_cast<double>(*total_ - done) / rate);
  if (last) {
    std::snprintf(part, sizeof part, " in %.1f s", elapsed);
    line += part;
  }
  if (terminal_) line = "\r\033[K" + line;
  if (last || !terminal_) line += "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  drawn_ = terminal_ && !last;
}

}  // namespace parallelcode::cli
