#pragma once

// map's progress on stderr, as GNU parallel's --bar and --eta users expect it: done,
// failed, running, jobs/s, and with a known total a bar and an ETA. Redrawn at most
// ten times a second; on a terminal one line, cleared before a result is printed to
// the same terminal; elsewhere a plain line per redraw.

#include <chrono>
#include <cstddef>
#include <optional>

namespace parallelcode::cli {

class progress {
 public:
  explicit progress(bool shown);
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;

  void expect(std::size_t total) { total_ = total; }
  // Redraws if a tenth of a second has passed since the last time.
  void update(std::size_t done, std::size_t failed, std::size_t running);
  // Before writing a result to stdout: takes the bar off the line if it shares the terminal.
  void clear();
  // The last line, always drawn, and ended.
  void finish(std::size_t done, std::size_t failed);

 private:
  using clock = std::chrono::steady_clock;
  void draw(std::size_t done, std::size_t failed, std::size_t running, bool last);

  bool shown_;
  bool terminal_;       // stderr is a terminal: redraw one line in place
  bool shares_stdout_;  // and stdout is that same terminal
  bool drawn_ = false;  // a bar is on the terminal's current line
  std::optional<std::size_t> total_;
  clock::time_point started_ = clock::now();
  clock::time_point next_draw_ = started_;
};

}  // namespace parallelcode::cli
