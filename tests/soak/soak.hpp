// The state one soak run shares between its lanes (the threads that drive the pools),
// its executor killer and its watchdog.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mqpool/mqpool.hpp>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "processes.hpp"

namespace soak {

using namespace std::chrono_literals;

// Every wait of a lane ends by then: a result that takes longer is a hang, a failure.
inline constexpr std::chrono::milliseconds kWait = 60s;
// A lane inside one call for longer than this is hung (a call without a deadline of its
// own, such as map(), or a get(kWait) that did not return): the watchdog ends the run.
inline constexpr std::chrono::milliseconds kHang = 100s;

// A wrong answer or a broken promise: what was called, what came back, what was due.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What the report counts: tasks by the call that ran them, and checked events.
enum class Kind : int {
  map,
  starmap,
  imap,
  imap_unordered,
  apply_async,
  apply,
  callbacks,
  task_errors,
  task_timeouts,
  get_timeouts,
  next_timeouts,
  worker_lost,
  lost_before_call,
  abandoned_streams,
  kills,
  count
};
const char* kind_name(Kind k);

using Tally = std::array<std::uint64_t, static_cast<std::size_t>(Kind::count)>;

// One pool and what its outcomes are checked against.
struct Target {
  mqpool::Pool* pool = nullptr;
  std::string name;     // "main", "timed"
  int max_retries = 0;  // its PoolOptions::max_retries
  std::chrono::milliseconds task_timeout{0};
};

// Where a lane is: the call it waits in and since when (for the watchdog's message).
class Lane {
 public:
  explicit Lane(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  void begin(std::string call);
  void end();
  // The call it has been in for longer than `limit`, or "".
  std::string stuck(std::chrono::milliseconds limit) const;

 private:
  std::string name_;
  mutable std::mutex mu_;
  std::string call_;
  Clock::time_point since_{};
  bool busy_ = false;
};

// Lets the run stop every lane between two of its rounds (the RSS is read with no work
// in flight, so that the two readings compare like with like).
class Gate {
 public:
  // A lane between rounds: waits while paused, unless the run is stopping.
  void checkpoint(const std::atomic<bool>& stop);
  // Pauses; true once `lanes` lanes wait at their checkpoint; false at `deadline`, or
  // when the run stops (a lane that failed never comes).
  bool pause(int lanes, Clock::time_point deadline, const std::atomic<bool>& stop);
  void resume();
  // Wakes the lanes waiting at their checkpoint, to see that the run stops.
  void wake();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool paused_ = false;
  int parked_ = 0;
};

class Soak {
 public:
  explicit Soak(std::string mode) : mode_(std::move(mode)) {}
  const std::string& mode() const { return mode_; }

  // One line on stdout, "[mode] text", written at once (the two modes share stdout).
  void say(const std::string& text) const;
  void count(Kind k, std::uint64_t n = 1) { tally_[static_cast<int>(k)] += n; }
  Tally tally() const;
  std::string describe(const Tally& t) const;

  // Records the first failure and stops the run; later ones are printed too.
  void fail(const std::string& what);
  bool failed() const { return failed_; }

  // Every SIGKILL the killer sends is recorded first: a call that fails with
  // WorkerLostError must have had max_retries + 1 of them in its window, one of them
  // the process the error names.
  void record_kill(pid_t pid);
  struct Kills {
    std::uint64_t n = 0;           // kills since `from`
    bool named = false;            // `pid` among them
    Clock::time_point named_at{};  // when it was killed (the latest time)
  };
  Kills kills_since(Clock::time_point from, pid_t pid) const;
  std::atomic<bool> stop{false};
  // Until the first RSS reading: rounds take their largest sizes more often (shape()).
  std::atomic<bool> warming{true};
  Gate gate;

 private:
  std::string mode_;
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(Kind::count)> tally_{};
  std::atomic<bool> failed_{false};
  mutable std::mutex kills_mu_;
  std::deque<std::pair<Clock::time_point, pid_t>> kills_;  // oldest first
};

}  // namespace soak
