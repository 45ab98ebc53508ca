// The timed lane: the timed pool's task_timeout, AsyncResult::get(timeout) and
// ResultStream::next(timeout) on the main pool; and the executor killer.
#include <thread>

#include "lane_util.hpp"

namespace soak {

namespace {

constexpr std::chrono::milliseconds kShort{50};  // the deadline a 400 ms nap cannot meet
constexpr std::int64_t kNapMs = 400;

// A nap on the timed pool: quick ones return, ones three times its limit time out.
std::int64_t timed_nap(const Target& t, std::uint64_t& rng) {
  return draw(rng, 0, 99) < 30 ? 3 * t.task_timeout.count() : draw(rng, 0, 20);
}

void timed_applies(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  std::vector<Pending<std::int64_t>> naps;
  const auto k = draw(rng, 1, 4);
  for (std::int64_t i = 0; i < k; ++i) {
    const auto ms = timed_nap(t, rng);
    const bool over = ms > t.task_timeout.count();
    submit(s, t, naps, nap, ms,
           over ? Expect<std::int64_t>{.timeout = true} : Expect<std::int64_t>{.value = ms},
           "apply_async(soak.nap, " + std::to_string(ms) + ") on the timed pool");
  }
  for (auto& p : naps) settle(s, t, lane, p);
}

void timed_map(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  std::vector<std::int64_t> ms;
  bool over = false;
  for (auto n = draw(rng, 2, 8); n > 0; --n) {
    ms.push_back(timed_nap(t, rng));
    over = over || ms.back() > t.task_timeout.count();
  }
  const Call c =
      call(s, "map_async(soak.nap, " + std::to_string(ms.size()) + " naps) on the timed pool");
  const auto e = over ? Expect<std::vector<std::int64_t>>{.timeout = true}
                      : Expect<std::vector<std::int64_t>>{.value = ms};
  auto seen = std::make_shared<Seen<std::vector<std::int64_t>>>();
  lane.begin(c.what);
  auto r = t.pool->map_async(nap, ms, map_options_for<std::int64_t>(0, seen));
  const Outcome o = check(s, t, c, e, [&] { return r.get(kWait); });
  lane.end();
  check_seen(s, c, *seen, o, e);
  count_failure_outcome(s, o);
  s.count(Kind::map, ms.size());
}

// get(50 ms) on a 400 ms nap must time out, and leave the result to a later get().
void get_timeout(Soak& s, const Target& t, Lane& lane) {
  const Call c = call(s, "apply_async(soak.nap, " + std::to_string(kNapMs) + ")");
  lane.begin(c.what + ".get(50 ms)");
  auto r = t.pool->apply_async(nap, kNapMs);
  try {
    const auto v = r.get(kShort);
    throw Failure(c.what + ": get(50 ms) returned " + show(v) + " before the nap could end");
  } catch (const mqpool::TimeoutError& e) {
    if (!std::string(e.what()).starts_with("AsyncResult::get: no result within 50 ms"))
      throw Failure(c.what + ": get(50 ms) threw TimeoutError '" + e.what() + "'");
  } catch (const mqpool::WorkerLostError& e) {
    accept_lost(s, t, c, e);
    s.count(Kind::worker_lost);
    return lane.end();
  }
  s.count(Kind::get_timeouts);
  lane.begin(c.what + ".get");
  const Outcome o =
      check(s, t, c, Expect<std::int64_t>{.value = kNapMs}, [&] { return r.get(kWait); });
  lane.end();
  count_failure_outcome(s, o);
  s.count(Kind::apply_async);
}

// next(50 ms) on a stream whose first task naps 400 ms must time out, and the stream
// must then yield every result.
void next_timeout(Soak& s, const Target& t, Lane& lane) {
  const std::vector<std::int64_t> ms{kNapMs, 1, 2};
  const Call c = call(s, "imap(soak.nap, {400, 1, 2})");
  lane.begin(c.what + ".next(50 ms)");
  auto stream = t.pool->imap(nap, ms);
  std::size_t first = 0;  // the first result still to come
  try {
    if (auto v = stream.next(kShort))
      throw Failure(c.what + ": next(50 ms) returned " + show(*v) + " before the nap could end");
    throw Failure(c.what + ": next(50 ms) said the stream had ended");
  } catch (const mqpool::TimeoutError& e) {
    if (std::string(e.what()) != "ResultStream::next: no result within the timeout")
      throw Failure(c.what + ": next(50 ms) threw TimeoutError '" + e.what() + "'");
  } catch (const mqpool::WorkerLostError& e) {
    accept_lost(s, t, c, e);  // the stream moves past it: the rest is checked below
    s.count(Kind::worker_lost);
    first = 1;
  }
  if (first == 0) s.count(Kind::next_timeouts);
  for (std::size_t i = first; i < ms.size(); ++i) {
    lane.begin(c.what + ", result " + std::to_string(i));
    auto next = [&] {
      auto v = stream.next(kWait);
      if (!v) throw Failure(c.what + ": ended after " + std::to_string(i) + " results");
      return *v;
    };
    count_failure_outcome(s, check(s, t, c, Expect<std::int64_t>{.value = ms[i]}, next));
  }
  lane.end();
  s.count(Kind::imap, ms.size());
}

}  // namespace

void timed_round(Soak& s, const Pools& p, Lane& lane, std::uint64_t& rng) {
  const auto v = draw(rng, 0, 99);
  if (v < 45) return timed_applies(s, p.timed, lane, rng);
  if (v < 60) return timed_map(s, p.timed, lane, rng);
  if (v < 80) return get_timeout(s, p.main, lane);
  next_timeout(s, p.main, lane);
}

void kill_round(Soak& s, const std::vector<pid_t>& agents, std::uint64_t& rng) {
  const auto wait = std::chrono::milliseconds(draw(rng, 300, 1500));
  for (const auto until = Clock::now() + wait; Clock::now() < until && !s.stop;)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (s.stop) return;
  std::vector<std::pair<pid_t, pid_t>> executors;  // (executor, its agent)
  for (const pid_t agent : agents)
    for (const pid_t pid : children_of(agent)) executors.emplace_back(pid, agent);
  if (executors.empty()) return;
  const auto [pid, agent] = executors[static_cast<std::size_t>(
      draw(rng, 0, static_cast<std::int64_t>(executors.size()) - 1))];
  s.record_kill(pid);  // before the signal: a call that sees its outcome sees the record
  if (kill_child_of(pid, agent)) s.count(Kind::kills);
}

}  // namespace soak
