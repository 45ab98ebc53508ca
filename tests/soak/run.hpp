// One mode's run: the lanes for SOAK_SECONDS, the RSS after the warm-up and at the end,
// the report; and the watchdog that ends the program if anything hangs.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lanes.hpp"
#include "soak.hpp"

namespace soak {

// The timed pools' PoolOptions::task_timeout.
inline constexpr std::chrono::milliseconds kTaskTimeout = 1000ms;
// How long after SOAK_SECONDS a mode may take to pause, join its pools and stop its
// helpers before the watchdog calls it a hang.
inline constexpr std::chrono::seconds kTeardown = 240s;

struct Config {
  std::chrono::seconds total{600};   // SOAK_SECONDS
  std::chrono::seconds warmup{120};  // 20 % of it, or half of it up to 30 s
  std::uint64_t seed = 0;            // SOAK_SEED, else random
};

// A process whose RSS must not grow by more than 10 % from the warm-up to the end.
struct Watched {
  std::string name;
  pid_t pid = 0;
  std::string note;  // what it is, for the report
};

struct Setup {
  Pools pools;
  std::vector<pid_t> agents;  // the killer kills their children (the executors)
  std::vector<Watched> watched;
};

// The run's threads: one per lane, the killer, and the main thread's own waits.
struct Lanes {
  Lane map{"map"}, imap{"imap"}, apply{"apply"}, timed{"timed"}, killer{"killer"}, main{"main"};
  static constexpr int kWorking = 5;  // the ones that pause at the gate
  std::vector<const Lane*> all() const { return {&map, &imap, &apply, &timed, &killer, &main}; }
};

// Ends the program (every started process SIGKILLed, exit 1) if a lane stays in one call
// for longer than kHang or the run passes `deadline`: a hang fails the run, it does not
// hold up CI.
class Watchdog {
 public:
  Watchdog(Soak& s, const Lanes& lanes, Clock::time_point deadline);
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog();
  // Runs `poll` about once a second on the watchdog's thread, until set again ({}: none).
  void set_poll(std::function<void()> poll);

 private:
  void loop();
  [[noreturn]] void give_up(const std::string& why);

  Soak& s_;
  std::vector<const Lane*> lanes_;
  Clock::time_point deadline_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::function<void()> poll_;
  std::thread thread_;
};

// Every process of a run allocates 256 KiB and more with mmap, freed at once: glibc's own
// threshold moves up to the largest block freed, after which blocks of the soak's big
// payloads (512-700 KiB) are carved from the heaps and kept there, in whichever of a
// dozen thread arenas; readings then varied by up to 20 % from run to run with no leak.
// A leaked big block still counts (it stays mapped). This process and its forks get it by
// mallopt; `mqpool broker`, not ours to change, by MALLOC_MMAP_THRESHOLD_ (set here for
// the programs this process starts).
inline constexpr int kMmapThreshold = 256 << 10;
void fix_mmap_threshold();

// "for 60 s (warm-up 12 s), seed N"
std::string describe_run(const Config& cfg);

// Runs the lanes on `setup` for cfg.total, measures, reports. Failures go to s.fail().
void run(Soak& s, Lanes& lanes, const Setup& setup, const Config& cfg);

// close() and join() every pool (terminate() after a failure), then destroys them.
void end_pools(Soak& s, Lane& main, const std::vector<std::unique_ptr<mqpool::Pool>*>& pools);

}  // namespace soak
