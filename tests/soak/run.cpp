#include "run.hpp"

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <map>

namespace soak {

namespace {

constexpr double kMaxGrowth = 0.10;  // RSS from the end of the warm-up to the end
// Before reading RSS with the lanes paused: abandoned streams' tasks finish, and agents
// replace the executors that were just killed.
constexpr auto kSettle = 1500ms;
constexpr auto kEarlier = 4s;  // the first of a figure's two readings comes this much earlier

struct Figures {
  Tally tally{};
  std::vector<long> rss_kib;  // as Setup::watched
};

std::vector<std::thread> start_lanes(Soak& s, Lanes& l, const Setup& setup, std::uint64_t seed) {
  using Round = void (*)(Soak&, const Pools&, Lane&, std::uint64_t&);
  std::vector<std::thread> out;
  std::uint64_t n = 0;
  auto start = [&](Lane& lane, Round round) {
    out.emplace_back([&s, &lane, &setup, round, rng = seed + 0x1000193 * ++n]() mutable {
      run_lane(s, lane, [&] { round(s, setup.pools, lane, rng); });
    });
  };
  start(l.map, map_round);
  start(l.imap, imap_round);
  start(l.apply, apply_round);
  start(l.timed, timed_round);
  out.emplace_back([&s, &l, &setup, rng = seed + 0x1000193 * ++n]() mutable {
    run_lane(s, l.killer, [&] { kill_round(s, setup.agents, rng); });
  });
  return out;
}

void stop_lanes(Soak& s, Lane& main, std::vector<std::thread>& threads) {
  s.stop = true;
  s.gate.wake();
  main.begin("joining the lanes after the run");
  for (auto& t : threads) t.join();
  main.end();
}

// One line of RSS figures as they are, with work in flight: the trend between the two
// checked readings (they are taken with the lanes paused).
void trace(const Soak& s, const Setup& setup, Clock::duration since_start) {
  std::string line =
      "at " +
      std::to_string(std::chrono::duration_cast<std::chrono::seconds>(since_start).count()) +
      " s: RSS";
  for (const auto& w : setup.watched)
    line += " " + w.name + " " + std::to_string(rss_kib(w.pid).value_or(0)) + " KiB,";
  const Tally t = s.tally();
  std::uint64_t tasks = 0;
  for (const Kind k :
       {Kind::map, Kind::starmap, Kind::imap, Kind::imap_unordered, Kind::apply_async, Kind::apply})
    tasks += t[static_cast<int>(k)];
  s.say(line + " " + std::to_string(tasks) + " tasks, " +
        std::to_string(t[static_cast<int>(Kind::kills)]) + " kills");
}

// Sleeps until `t`, or until a failure stops the run; traces every tenth of the run.
void wait_until(const Soak& s, const Setup& setup, Clock::time_point start, Clock::time_point t,
                const Config& cfg) {
  const auto every = cfg.total / 10;
  auto next = start + every;
  while (next <= Clock::now()) next += every;
  while (Clock::now() < t && !s.failed()) {
    std::this_thread::sleep_for(100ms);
    if (Clock::now() >= next && Clock::now() < t) {
      trace(s, setup, Clock::now() - start);
      next += every;
    }
  }
}

// Reads the figures with no work in flight: the lanes paused (`paused`), or ended.
Figures measure(Soak& s, Lanes& lanes, const Setup& setup, bool paused) {
  Figures f;
  lanes.main.begin("pausing the lanes to read RSS");
  if (paused && !s.gate.pause(Lanes::kWorking, Clock::now() + kHang + 50s, s.stop)) {
    if (!s.failed())
      s.fail("the lanes did not pause to read RSS within " +
             std::to_string((kHang + 50s).count() / 1000) + " s");
    return f;
  }
  std::this_thread::sleep_for(kSettle);
  f.tally = s.tally();
  for (const auto& w : setup.watched) {
    const auto rss = rss_kib(w.pid);
    if (!rss) s.fail(w.name + " (pid " + std::to_string(w.pid) + ") is gone");
    f.rss_kib.push_back(rss.value_or(0));
  }
  lanes.main.end();
  return f;
}

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f %%", x * 100);
  return buf;
}

void report_warmup(const Soak& s, const Setup& setup, const Figures& f, const Config& cfg) {
  s.say("after the warm-up (" + std::to_string(cfg.warmup.count()) + " s): " + s.describe(f.tally));
  s.say("  (each RSS figure: the larger of two readings with the lanes paused, " +
        std::to_string(kEarlier.count()) + " s apart)");
  for (std::size_t i = 0; i < setup.watched.size(); ++i) {
    const auto& w = setup.watched[i];
    s.say("  RSS " + w.name + " (pid " + std::to_string(w.pid) + ", " + w.note +
          "): " + std::to_string(f.rss_kib[i]) + " KiB");
  }
}

// The end's report; fails the run for RSS growth above kMaxGrowth.
void report_end(Soak& s, const Setup& setup, const Figures& warm, const Figures& end,
                const Config& cfg) {
  s.say("at the end (" + std::to_string(cfg.total.count()) + " s): " + s.describe(end.tally));
  for (std::size_t i = 0; i < setup.watched.size(); ++i) {
    const auto& w = setup.watched[i];
    const double growth = static_cast<double>(end.rss_kib[i] - warm.rss_kib[i]) /
                          static_cast<double>(std::max(1L, warm.rss_kib[i]));
    s.say("  RSS " + w.name + " (pid " + std::to_string(w.pid) +
          "): " + std::to_string(warm.rss_kib[i]) + " KiB after the warm-up, " +
          std::to_string(end.rss_kib[i]) + " KiB at the end (" + percent(growth) + ")");
    if (growth > kMaxGrowth)
      s.fail("the RSS of " + w.name + " grew by " + percent(growth) +
             " from the warm-up to the end (limit " + percent(kMaxGrowth) + ")");
  }
}

// A run that never checked some kind of outcome has not tested it: that fails too.
void check_coverage(Soak& s, const Tally& t) {
  for (const Kind k : {Kind::map, Kind::starmap, Kind::imap, Kind::imap_unordered,
                       Kind::apply_async, Kind::apply, Kind::callbacks, Kind::task_errors,
                       Kind::task_timeouts, Kind::get_timeouts, Kind::next_timeouts, Kind::kills}) {
    if (t[static_cast<int>(k)] == 0)
      s.fail(std::string("the run checked no ") + kind_name(k) + ": run it longer (SOAK_SECONDS)");
  }
}

// Each figure is the larger of two readings kEarlier apart (work runs in between):
// readings with the lanes paused still vary by a few % with the heap's layout, and
// now and then one is well below the rest; the larger of two is steadier.
Figures larger(Figures earlier, const Figures& later) {
  if (earlier.rss_kib.size() != later.rss_kib.size()) return later;
  for (std::size_t i = 0; i < later.rss_kib.size(); ++i)
    earlier.rss_kib[i] = std::max(earlier.rss_kib[i], later.rss_kib[i]);
  earlier.tally = later.tally;
  return earlier;
}

// A reading with the lanes paused, after which they go on.
Figures checkpoint(Soak& s, Lanes& lanes, const Setup& setup) {
  Figures f = measure(s, lanes, setup, true);
  s.gate.resume();
  return f;
}

}  // namespace

void fix_mmap_threshold() {
  ::mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  ::setenv("MALLOC_MMAP_THRESHOLD_", std::to_string(kMmapThreshold).c_str(), 1);
}

std::string describe_run(const Config& cfg) {
  return "for " + std::to_string(cfg.total.count()) + " s (warm-up " +
         std::to_string(cfg.warmup.count()) + " s), seed " + std::to_string(cfg.seed);
}

void run(Soak& s, Lanes& lanes, const Setup& setup, const Config& cfg) {
  const auto start = Clock::now();
  auto threads = start_lanes(s, lanes, setup, cfg.seed);
  Figures warm, before_end;
  wait_until(s, setup, start, start + cfg.warmup - kEarlier, cfg);
  if (!s.failed()) warm = checkpoint(s, lanes, setup);
  wait_until(s, setup, start, start + cfg.warmup, cfg);
  if (!s.failed()) {
    warm = larger(warm, checkpoint(s, lanes, setup));
    if (!s.failed()) report_warmup(s, setup, warm, cfg);
  }
  s.warming = false;
  wait_until(s, setup, start, start + cfg.total - kEarlier, cfg);
  if (!s.failed()) before_end = checkpoint(s, lanes, setup);
  wait_until(s, setup, start, start + cfg.total, cfg);
  stop_lanes(s, lanes.main, threads);
  if (s.failed()) return;
  const Figures end = larger(before_end, measure(s, lanes, setup, false));
  if (s.failed()) return;
  report_end(s, setup, warm, end, cfg);
  check_coverage(s, end.tally);
}

void end_pools(Soak& s, Lane& main, const std::vector<std::unique_ptr<mqpool::Pool>*>& pools) {
  main.begin(s.failed() ? "terminate() and join() of the pools"
                        : "close() and join() of the pools");
  for (auto* p : pools) {
    if (s.failed())
      (*p)->terminate();
    else
      (*p)->close();
  }
  for (auto* p : pools) {
    (*p)->join();
    p->reset();
  }
  main.end();
}

Watchdog::Watchdog(Soak& s, const Lanes& lanes, Clock::time_point deadline)
    : s_(s), lanes_(lanes.all()), deadline_(deadline), thread_([this] { loop(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::set_poll(std::function<void()> poll) {
  std::lock_guard lock(mu_);
  poll_ = std::move(poll);
}

void Watchdog::loop() {
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, 1s, [&] { return done_; })) {
    for (const Lane* lane : lanes_) {
      if (auto call = lane->stuck(kHang); !call.empty())
        give_up("the " + lane->name() + " lane has been in " + call + " for more than " +
                std::to_string(kHang.count() / 1000) + " s: a hang");
    }
    if (Clock::now() > deadline_) give_up("the run went on past its deadline: a hang");
    if (poll_) poll_();
  }
}

void Watchdog::give_up(const std::string& why) {
  s_.say("FAILURE: " + why + "; killing every process this run started");
  emergency_kill_all();
  ::_exit(1);
}

}  // namespace soak
