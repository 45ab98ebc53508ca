#include "progress.hpp"

#include <cstdio>
#include <string>

namespace mqpool::cli {

void Progress::set_total(std::uint64_t total) { total_ = total; }

void Progress::update(std::uint64_t done, std::uint64_t failed) {
  done_ = done;
  failed_ = failed;
}

void Progress::tick() {
  if (on_ && Clock::now() - drawn_ >= std::chrono::milliseconds(100)) redraw();
}

void Progress::clear() {
  if (!on_ || !shown_) return;
  std::fputs("\r\033[K", stderr);
  shown_ = false;
}

void Progress::redraw() {
  if (!on_) return;
  const auto now = Clock::now();
  drawn_ = now;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done_) / secs : 0;
  std::string line = "\r\033[K" + std::to_string(done_) + "/" +
                     (total_ ? std::to_string(*total_) : std::string("?"));
  char buf[96];
  if (total_ && *total_ > 0) {
    std::snprintf(buf, sizeof buf, " %3.0f%%",
                  100.0 * static_cast<double>(done_) / static_cast<double>(*total_));
    line += buf;
  }
  std::snprintf(buf, sizeof buf, "  %.1f jobs/s", rate);
  line += buf;
  if (total_ && rate > 0 && *total_ >= done_) {
    const auto eta = static_cast<long long>(static_cast<double>(*total_ - done_) / rate);
    std::snprintf(buf, sizeof buf, "  ETA %lld:%02lld", eta / 60, eta % 60);
    line += buf;
  }
  if (failed_ > 0) line += "  " + std::to_string(failed_) + " failed";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
  shown_ = true;
}

void Progress::finish() {
  if (!on_) return;
  redraw();
  std::fputc('\n', stderr);
  shown_ = false;
}

}  // namespace mqpool::cli
