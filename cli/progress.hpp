// `mqpool run`'s progress bar on standard error: done/total, jobs/s, ETA, failures.
// Redrawn at most 10 times a second; everything else written to the terminal clears it
// first (clear(), then redraw()), so that it never mixes into a job's output.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace mqpool::cli {

class Progress {
 public:
  explicit Progress(bool on) : on_(on) {}
  // The number of jobs, once the input has ended (until then the bar shows "done/?").
  void set_total(std::uint64_t total);
  void update(std::uint64_t done, std::uint64_t failed);
  void tick();    // redraws if due
  void clear();   // erases the bar's line
  void redraw();  // draws it now
  void finish();  // the last drawing, and a newline

 private:
  using Clock = std::chrono::steady_clock;
  bool on_;
  bool shown_ = false;
  Clock::time_point start_ = Clock::now(), drawn_{};
  std::uint64_t done_ = 0, failed_ = 0;
  std::optional<std::uint64_t> total_;
};

}  // namespace mqpool::cli
