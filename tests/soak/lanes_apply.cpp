// The apply lane: apply_async bursts with callbacks, and apply.
#include "lane_util.hpp"

namespace soak {

namespace {

// One burst of apply_async calls of three tasks, each checked with its callbacks; they
// wait together, so that the pool batches them.
void apply_burst(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  std::vector<Pending<std::int64_t>> ints;
  std::vector<Pending<std::string>> strings;
  const auto k = shape(s, rng, 120).n;
  for (std::int64_t i = 0; i < k; ++i) {
    const auto v = draw(rng, 0, 99);
    if (v < 60) {
      const auto x = draw(rng, 0, 1'000'000'000);
      submit(s, t, ints, square, x, {.value = square(x)},
             "apply_async(soak.square, " + std::to_string(x) + ")");
    } else if (v < 85) {  // a third of them rejected
      const auto x = draw(rng, 0, 10'000'000) * 97 + (draw(rng, 0, 2) == 0 ? 13 : draw(rng, 0, 96));
      submit(
          s, t, ints, picky, x,
          rejected(x) ? Expect<std::int64_t>{.reject = x} : Expect<std::int64_t>{.value = picky(x)},
          "apply_async(soak.picky, " + std::to_string(x) + ")");
    } else {
      std::string arg =
          payload(static_cast<std::uint64_t>(draw(rng, 0, 1 << 30)), payload_size(rng));
      const std::string what = "apply_async(soak.reverse, " + show(arg) + ")";
      Expect<std::string> e{.value = reverse(arg)};
      submit(s, t, strings, reverse, std::move(arg), std::move(e), what);
    }
  }
  for (auto& p : ints) settle(s, t, lane, p);
  for (auto& p : strings) settle(s, t, lane, p);
}

// The blocking apply(): the watchdog's kHang bounds it.
void apply_plain(Soak& s, const Target& t, Lane& lane, std::uint64_t& rng) {
  for (int i = 0; i < 5; ++i) {
    const auto x = draw(rng, 0, 1'000'000'000);
    const Call c = call(s, "apply(soak.square, " + std::to_string(x) + ")");
    lane.begin(c.what);
    const Outcome o = check(s, t, c, Expect<std::int64_t>{.value = square(x)},
                            [&] { return t.pool->apply(square, x); });
    lane.end();
    count_failure_outcome(s, o);
    s.count(Kind::apply);
  }
}

}  // namespace

void apply_round(Soak& s, const Pools& p, Lane& lane, std::uint64_t& rng) {
  if (draw(rng, 0, 99) < 10) return apply_plain(s, p.main, lane, rng);
  apply_burst(s, p.main, lane, rng);
}

}  // namespace soak
