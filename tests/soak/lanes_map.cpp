// The map lane (map, map_async, starmap_async, maps of unknown size) and the imap lane
// (imap, imap_unordered, streams dropped early).
#include <ranges>
#include <set>
#include <tuple>

#include "lane_util.hpp"

namespace soak {

namespace {

void map_square_async(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  const auto [n, cs] = shape(s, rng, 3000);
  const auto base = draw(rng, 0, 1'000'000'000);
  const auto xs = consecutive(base, n);
  const Call c = call(s, "map_async(soak.square" + inputs(n, base, cs) + ")");
  const Expect<std::vector<std::int64_t>> e{.value = apply_all(xs, square)};
  auto seen = std::make_shared<Seen<std::vector<std::int64_t>>>();
  lane.begin(c.what);
  auto r = t.pool->map_async(square, xs, map_options_for<std::int64_t>(cs, seen));
  const Outcome o = check(s, t, c, e, [&] { return r.get(kWait); });
  lane.end();
  check_seen(s, c, *seen, o, e);
  count_failure_outcome(s, o);
  s.count(Kind::map, static_cast<std::uint64_t>(n));
}

// The blocking map(): no deadline of its own, so the watchdog's kHang bounds it.
void map_picky(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  const auto [n, cs] = shape(s, rng, 2000);
  const auto base = draw(rng, 0, 1'000'000'000);
  const auto xs = consecutive(base, n);
  const Call c = call(s, "map(soak.picky" + inputs(n, base, cs) + ")");
  lane.begin(c.what);
  const Outcome o = check(s, t, c, picky_map(xs), [&] { return t.pool->map(picky, xs, cs); });
  lane.end();
  count_failure_outcome(s, o);
  s.count(Kind::map, static_cast<std::uint64_t>(n));
}

// A filtered view has no size(): map encodes it all first and cuts chunks by bytes.
void map_unsized(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  const auto [n, cs] = shape(s, rng, 3000);
  const auto base = draw(rng, 0, 1'000'000'000);
  auto odd = std::views::iota(base, base + n) |
             std::views::filter([](std::int64_t x) { return x % 2 != 0; });
  std::vector<std::int64_t> want;
  for (const auto x : odd) want.push_back(square(x));
  const Call c = call(s, "map(soak.square, the odd ones" + inputs(n, base, cs) + ")");
  lane.begin(c.what);
  const Outcome o = check(s, t, c, Expect<std::vector<std::int64_t>>{.value = want},
                          [&] { return t.pool->map(square, odd, cs); });
  lane.end();
  count_failure_outcome(s, o);
  s.count(Kind::map, want.size());
}

void starmap_affine(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  const auto [n, cs] = shape(s, rng, 2000);
  std::vector<std::tuple<std::int64_t, std::int64_t>> args;
  std::vector<std::int64_t> want;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto a = draw(rng, -1'000'000, 1'000'000), b = draw(rng, -1'000'000, 1'000'000);
    args.emplace_back(a, b);
    want.push_back(affine(a, b));
  }
  const Call c = call(s, "starmap_async(soak.affine, " + std::to_string(n) + " pairs, chunksize " +
                             std::to_string(cs) + ")");
  const Expect<std::vector<std::int64_t>> e{.value = want};
  auto seen = std::make_shared<Seen<std::vector<std::int64_t>>>();
  lane.begin(c.what);
  auto r = t.pool->starmap_async(affine, args, map_options_for<std::int64_t>(cs, seen));
  const Outcome o = check(s, t, c, e, [&] { return r.get(kWait); });
  lane.end();
  check_seen(s, c, *seen, o, e);
  count_failure_outcome(s, o);
  s.count(Kind::starmap, static_cast<std::uint64_t>(n));
}

// Strings from 512 KiB, which mqpool allocates for huge pages, come only from here: two
// in every round of the warm-up, then in one round in ten. glibc serves such a size from
// the heap once one was freed (its mmap threshold rises), so how many of them were in
// flight at once sets the heap's size in every process they pass through. Bounded, and
// frequent in the warm-up, that size is reached before the first RSS reading; otherwise a
// rare pile-up would raise the RSS by a few MiB for good, which is not a leak (measured:
// without them the clients' and broker's readings stay within 2 %).
void map_reverse(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  const auto n = shape(s, rng, 40).n;
  const bool huge = s.warming || draw(rng, 0, 9) == 0;
  const std::int64_t first_huge = draw(rng, 0, n - 1), second_huge = draw(rng, 0, n - 1);
  std::vector<std::string> xs, want;
  std::size_t bytes = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto size = huge && (i == first_huge || i == second_huge)
                          ? static_cast<std::size_t>(draw(rng, 512 << 10, 700 << 10))
                          : payload_size(rng);
    xs.push_back(payload(static_cast<std::uint64_t>(draw(rng, 0, 1 << 30)), size));
    want.push_back(reverse(xs.back()));
    bytes += xs.back().size();
  }
  const Call c = call(s, "map_async(soak.reverse, " + std::to_string(n) + " strings of " +
                             std::to_string(bytes) + " bytes in all)");
  const Expect<std::vector<std::string>> e{.value = want};
  lane.begin(c.what);
  auto r = t.pool->map_async(reverse, xs);
  const Outcome o = check(s, t, c, e, [&] { return r.get(kWait); });
  lane.end();
  count_failure_outcome(s, o);
  s.count(Kind::map, static_cast<std::uint64_t>(n));
}

// The next result of `stream`, which must have one.
template <class Stream>
std::int64_t next_of(Stream& stream, const Call& c, std::int64_t i) {
  auto r = stream.next(kWait);
  if (!r) throw Failure(c.what + ": the stream ended after " + std::to_string(i) + " results");
  return *r;
}

template <class Stream>
void expect_end(Stream& stream, const Call& c, Lane& lane) {
  lane.begin(c.what + ", its end");
  if (auto r = stream.next(kWait))
    throw Failure(c.what + ": the stream yielded " + std::to_string(*r) + " after its last input");
  lane.end();
}

void imap_ordered(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  const auto [n, chunks] = shape(s, rng, 5000, 2);
  const int cs = std::max(1, chunks);  // imap: 0 would mean 1 anyway
  const auto base = draw(rng, 0, 1'000'000'000);
  const bool picky_fn = draw(rng, 0, 1) == 0;
  std::int64_t (*f)(std::int64_t) = picky_fn ? picky : square;
  const Call c = call(s, std::string("imap(") + (picky_fn ? "soak.picky" : "soak.square") +
                             inputs(n, base, cs) + ")");
  lane.begin(c.what);
  auto stream = t.pool->imap(f, std::views::iota(base, base + n), cs);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t x = base + i;
    const auto e = picky_fn && rejected(x) ? Expect<std::int64_t>{.reject = x}
                                           : Expect<std::int64_t>{.value = f(x)};
    lane.begin(c.what + ", result " + std::to_string(i));
    count_failure_outcome(s, check(s, t, c, e, [&] { return next_of(stream, c, i); }));
  }
  expect_end(stream, c, lane);
  s.count(Kind::imap, static_cast<std::uint64_t>(n));
}

// One value of an unordered picky stream: it must belong to an input not seen yet.
void take_unordered(const Call& c, std::set<std::int64_t>& left, std::int64_t got) {
  const std::int64_t x = picky_input(got);
  if (!left.contains(x) || rejected(x) || picky(x) != got)
    throw Failure(c.what + ": yielded " + std::to_string(got) +
                  ", which is not soak.picky's value for an input without a result yet");
  left.erase(x);
}

// The error being handled, from an unordered picky stream: the rejection of an input
// not seen yet (its message names it), or a task lost to kills.
void take_unordered_error(Soak& s, const Target& t, const Call& c, std::set<std::int64_t>& left,
                          std::uint64_t& lost) {
  try {
    throw;
  } catch (const mqpool::TaskError& e) {
    const std::string prefix = rejection_message(0).substr(0, rejection_message(0).size() - 1);
    const std::string& m = e.remote_message();
    const std::int64_t x = m.starts_with(prefix) ? std::stoll(m.substr(prefix.size())) : -1;
    check_rejection(c, e, x >= 0 && rejected(x) ? std::optional(x) : std::nullopt);
    if (!left.erase(x)) throw Failure(c.what + ": a second outcome for input " + std::to_string(x));
  } catch (const mqpool::WorkerLostError& e) {
    accept_lost(s, t, c, e);
    ++lost;
  } catch (const mqpool::TimeoutError& e) {
    check_timeout(t, c, e, false);
  } catch (const mqpool::Error& e) {
    throw Failure(c.what + ": threw '" + e.what() + "'");
  }
}

void imap_unordered_picky(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  const auto [n, chunks] = shape(s, rng, 5000, 2);
  const int cs = std::max(1, chunks);  // imap: 0 would mean 1 anyway
  const auto base = draw(rng, 0, 1'000'000'000);
  const Call c = call(s, "imap_unordered(soak.picky" + inputs(n, base, cs) + ")");
  const auto xs = consecutive(base, n);
  std::set<std::int64_t> left(xs.begin(), xs.end());
  std::uint64_t lost = 0, errors = 0;
  lane.begin(c.what);
  auto stream = t.pool->imap_unordered(picky, std::views::iota(base, base + n), cs);
  for (std::int64_t i = 0; i < n; ++i) {
    lane.begin(c.what + ", result " + std::to_string(i));
    try {
      take_unordered(c, left, next_of(stream, c, i));
    } catch (const mqpool::Error&) {
      take_unordered_error(s, t, c, left, lost);
      ++errors;
    }
  }
  if (left.size() != lost)
    throw Failure(c.what + ": " + std::to_string(left.size()) + " inputs got no outcome (" +
                  std::to_string(lost) + " WorkerLostErrors)");
  expect_end(stream, c, lane);
  s.count(Kind::imap_unordered, static_cast<std::uint64_t>(n));
  s.count(Kind::task_errors, errors - lost);
  s.count(Kind::worker_lost, lost);
}

// Dropped after a few results: its tasks in flight still run; their results are dropped.
// An apply behind them then waits for those (the pool's queue is first in, first out),
// so that leftovers of dropped streams never pile up: the broker's peak queue, and with
// it the RSS readings, stay comparable over the run.
void imap_abandoned(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  const auto [reads, chunks] = shape(s, rng, 21, 4);
  const std::int64_t read = reads - 1;  // 0 to 20
  const int cs = std::max(1, chunks);
  const auto base = draw(rng, 0, 1'000'000'000);
  const Call c =
      call(s, "imap(soak.square, an endless input from " + std::to_string(base) + ", chunksize " +
                  std::to_string(cs) + ", dropped after " + std::to_string(read) + " results)");
  lane.begin(c.what);
  {
    auto stream = t.pool->imap(square, std::views::iota(base), cs);
    for (std::int64_t i = 0; i < read; ++i) {
      lane.begin(c.what + ", result " + std::to_string(i));
      const auto e = Expect<std::int64_t>{.value = square(base + i)};
      count_failure_outcome(s, check(s, t, c, e, [&] { return next_of(stream, c, i); }));
    }
  }
  const Call after = call(s, "apply_async(soak.square, 7) after " + c.what);
  lane.begin(after.what);
  auto r = t.pool->apply_async(square, std::int64_t{7});
  count_failure_outcome(
      s, check(s, t, after, Expect<std::int64_t>{.value = 49}, [&] { return r.get(kWait); }));
  lane.end();
  s.count(Kind::imap, static_cast<std::uint64_t>(read));
  s.count(Kind::apply_async);
  s.count(Kind::abandoned_streams);
}

}  // namespace

void map_round(Soak& s, const Pools& p, Lane& lane, std::uint64_t& rng) {
  const auto v = draw(rng, 0, 99);
  if (v < 40) return map_square_async(s, p.main, lane, rng);
  if (v < 60) return map_picky(s, p.main, lane, rng);
  if (v < 72) return map_unsized(s, p.main, lane, rng);
  if (v < 86) return starmap_affine(s, p.main, lane, rng);
  map_reverse(s, p.main, lane, rng);
}

void imap_round(Soak& s, const Pools& p, Lane& lane, std::uint64_t& rng) {
  const auto v = draw(rng, 0, 99);
  if (v < 45) return imap_ordered(s, p.main, lane, rng);
  if (v < 90) return imap_unordered_picky(s, p.main, lane, rng);
  imap_abandoned(s, p.main, lane, rng);
}

}  // namespace soak
