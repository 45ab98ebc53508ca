#include "soak.hpp"

#include <unistd.h>

namespace soak {

const char* kind_name(Kind k) {
  static constexpr const char* kNames[] = {"map",
                                           "starmap",
                                           "imap",
                                           "imap_unordered",
                                           "apply_async",
                                           "apply",
                                           "callbacks",
                                           "task errors",
                                           "task timeouts",
                                           "get timeouts",
                                           "next timeouts",
                                           "worker lost",
                                           "of them to a kill just before the call",
                                           "abandoned streams",
                                           "executor kills"};
  static_assert(std::size(kNames) == static_cast<std::size_t>(Kind::count));
  return kNames[static_cast<int>(k)];
}

void Lane::begin(std::string call) {
  std::lock_guard lock(mu_);
  call_ = std::move(call);
  since_ = Clock::now();
  busy_ = true;
}

void Lane::end() {
  std::lock_guard lock(mu_);
  busy_ = false;
}

std::string Lane::stuck(std::chrono::milliseconds limit) const {
  std::lock_guard lock(mu_);
  if (!busy_ || Clock::now() - since_ < limit) return "";
  return call_;
}

void Gate::checkpoint(const std::atomic<bool>& stop) {
  std::unique_lock lock(mu_);
  if (!paused_) return;
  ++parked_;
  cv_.notify_all();
  cv_.wait(lock, [&] { return !paused_ || stop; });
  --parked_;
}

bool Gate::pause(int lanes, Clock::time_point deadline, const std::atomic<bool>& stop) {
  std::unique_lock lock(mu_);
  paused_ = true;
  return cv_.wait_until(lock, deadline, [&] { return parked_ == lanes || stop; }) && !stop;
}

void Gate::wake() {
  { std::lock_guard lock(mu_); }  // a lane between its check of `stop` and its wait sees it
  cv_.notify_all();
}

void Gate::resume() {
  {
    std::lock_guard lock(mu_);
    paused_ = false;
  }
  cv_.notify_all();
}

void Soak::say(const std::string& text) const {
  const std::string line = "[" + mode_ + "] " + text + "\n";
  // One write per line: the local and cluster modes print to the same stdout at once.
  for (std::size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(STDOUT_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
}

Tally Soak::tally() const {
  Tally t{};
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = tally_[i].load();
  return t;
}

std::string Soak::describe(const Tally& t) const {
  std::string out;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (!out.empty()) out += ", ";
    out += kind_name(static_cast<Kind>(i));
    out += ' ';
    out += std::to_string(t[i]);
  }
  return out;
}

void Soak::record_kill(pid_t pid) {
  const auto now = Clock::now();
  std::lock_guard lock(kills_mu_);
  kills_.emplace_back(now, pid);
  // Longer than any call's window (the longest calls are imap streams of a few seconds).
  while (kills_.front().first < now - std::chrono::minutes(15)) kills_.pop_front();
}

Soak::Kills Soak::kills_since(Clock::time_point from, pid_t pid) const {
  std::lock_guard lock(kills_mu_);
  Kills k;
  for (auto it = kills_.rbegin(); it != kills_.rend() && it->first >= from; ++it) {
    ++k.n;
    if (!k.named && it->second == pid) k.named_at = it->first;
    k.named = k.named || it->second == pid;
  }
  return k;
}

void Soak::fail(const std::string& what) {
  const bool first = !failed_.exchange(true);
  say(std::string(first ? "FAILURE: " : "another failure: ") + what);
  stop = true;
  gate.wake();
}

}  // namespace soak
