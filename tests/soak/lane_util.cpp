#include "lane_util.hpp"

namespace soak {

std::int64_t draw(std::uint64_t& rng, std::int64_t lo, std::int64_t hi) {
  std::uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return lo + static_cast<std::int64_t>(z % static_cast<std::uint64_t>(hi - lo + 1));
}

void run_lane(Soak& s, Lane& lane, const std::function<void()>& round) {
  try {
    for (;;) {
      s.gate.checkpoint(s.stop);
      if (s.stop) break;
      round();
    }
  } catch (const Failure& f) {
    s.fail(lane.name() + " lane: " + f.what());
  } catch (const std::exception& e) {
    s.fail(lane.name() + " lane: unexpected exception: " + e.what());
  }
  lane.end();
}

std::vector<std::int64_t> consecutive(std::int64_t base, std::int64_t n) {
  std::vector<std::int64_t> xs(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) xs[static_cast<std::size_t>(i)] = base + i;
  return xs;
}

std::optional<std::int64_t> first_rejected(const std::vector<std::int64_t>& xs) {
  for (const auto x : xs)
    if (rejected(x)) return x;
  return std::nullopt;
}

std::vector<std::int64_t> apply_all(const std::vector<std::int64_t>& xs,
                                    std::int64_t (*f)(std::int64_t)) {
  std::vector<std::int64_t> out;
  out.reserve(xs.size());
  for (const auto x : xs) out.push_back(f(x));
  return out;
}

Expect<std::vector<std::int64_t>> picky_map(const std::vector<std::int64_t>& xs) {
  if (auto r = first_rejected(xs)) return {.reject = r};
  return {.value = apply_all(xs, picky)};
}

Shape shape(const Soak& s, std::uint64_t& rng, std::int64_t max_n, int chunk_div) {
  static constexpr int kChunks[] = {0, 0, 1, 7, 64};
  if (s.warming && draw(rng, 0, 1) == 0) return {max_n, 1};
  const int cs = kChunks[draw(rng, 0, 4)];
  return {draw(rng, 1, max_n), cs == 0 ? 0 : std::max(1, cs / chunk_div)};
}

std::size_t payload_size(std::uint64_t& rng) {
  if (draw(rng, 0, 99) < 70) return static_cast<std::size_t>(draw(rng, 0, 2000));
  return static_cast<std::size_t>(draw(rng, 2000, 64 << 10));
}

std::string inputs(std::int64_t n, std::int64_t base, int chunksize) {
  return " (" + std::to_string(n) + " inputs from " + std::to_string(base) + ", chunksize " +
         std::to_string(chunksize) + ")";
}

}  // namespace soak
