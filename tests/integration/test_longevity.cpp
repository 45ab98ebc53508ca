// A pool that runs for weeks: ids that never wrap, and inputs that throw leave nothing
// behind. The counters start just below their old 32-bit limits (test_hooks.hpp), so
// that real work crosses them in a few calls instead of billions.
#include <mqpool/mqpool.hpp>
#include <numeric>
#include <ranges>
#include <stdexcept>

#include "client/src/pool_core.hpp"
#include "client/src/test_hooks.hpp"
#include "helpers.hpp"
#include "tasks.hpp"
#include "tests/sanitizers.hpp"

namespace mqpool::detail {
struct PoolInternals {
  static PoolCore& core(Pool& pool) { return *pool.core_; }
};
}  // namespace mqpool::detail

namespace itest {
namespace {

using mqpool::detail::g_test_hooks;
using mqpool::detail::PoolInternals;

// Sets the hooks for one test and restores them after it.
struct Hooks {
  explicit Hooks(mqpool::detail::TestHooks h) { g_test_hooks = h; }
  ~Hooks() { g_test_hooks = {}; }
};

// A pool whose results may never come (the failure under test) must not hold ~Pool.
struct TerminateOnExit {
  mqpool::Pool& pool;
  ~TerminateOnExit() { pool.terminate(); }
};

// apply_async (each call a job, many of them in coalesced batches), map and imap, all
// checked value by value.
void every_kind_of_work_arrives(mqpool::Pool& pool) {
  std::vector<mqpool::AsyncResult<std::int64_t>> calls;
  for (std::int64_t i = 0; i < 200; ++i) calls.push_back(pool.apply_async(square, i));
  for (std::int64_t i = 0; i < 200; ++i) ASSERT_EQ(calls[i].get(kLong), i * i) << "call " << i;
  std::vector<std::int64_t> in(1000);
  std::iota(in.begin(), in.end(), 0);
  const auto out = bounded(kLong, "map", [&] { return pool.map(square, in); });
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) EXPECT_EQ(out[i], in[i] * in[i]);
  auto stream = pool.imap(square, std::views::iota(std::int64_t{0}, std::int64_t{50}));
  for (std::int64_t i = 0; i < 50; ++i) {
    const auto v = stream.next(kLong);
    ASSERT_TRUE(v.has_value()) << "imap ended early at " << i;
    EXPECT_EQ(*v, i * i);
  }
  EXPECT_FALSE(stream.next(kLong).has_value());
}

// Job ids meet the old batch ids (bit 31) here; batch numbers cross their old modulus.
TEST(Longevity, JobIdsCrossingTheOldBatchIdsStillGetTheirResults) {
  Hooks hooks({.first_job = (1ull << 31) - 5, .first_batch = (1ull << 31) - 2, .first_index = 0});
  mqpool::Pool pool(2);
  TerminateOnExit guard{pool};
  every_kind_of_work_arrives(pool);
}

// Job ids past 2^32 overflowed the old seq (job << 32 | index) and every result was dropped;
// an imap's task indexes past 2^32 ran into the job's bits.
TEST(Longevity, JobIdsAndTaskIndexesPastTwoToThe32StillGetTheirResults) {
  Hooks hooks({.first_job = (1ull << 32) - 5, .first_batch = 0, .first_index = (1ull << 32) - 20});
  mqpool::Pool pool(2);
  TerminateOnExit guard{pool};
  every_kind_of_work_arrives(pool);
}

// VmRSS of this process, in bytes.
std::size_t rss() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key)
    if (key == "VmRSS:") {
      std::size_t kb = 0;
      in >> kb;
      return kb << 10;
    }
  return 0;
}

// A range that says it has `claimed` items, yields `actual` and then ends or throws.
struct LyingRange {
  std::size_t claimed, actual;
  bool throws;
  struct iterator {
    using value_type = std::int64_t;
    using difference_type = std::ptrdiff_t;
    const LyingRange* r = nullptr;
    std::size_t i = 0;
    std::int64_t operator*() const {
      if (r->throws && i == r->actual) throw std::runtime_error("the generator failed");
      return static_cast<std::int64_t>(i);
    }
    iterator& operator++() {
      ++i;
      return *this;
    }
    void operator++(int) { ++i; }
    bool operator==(std::default_sentinel_t) const { return !r->throws && i == r->actual; }
  };
  iterator begin() const { return {this, 0}; }
  std::default_sentinel_t end() const { return {}; }
  std::size_t size() const { return claimed; }
};

// The job table is empty and the memory of the failed maps' results is back.
void nothing_left(mqpool::Pool& pool, std::size_t rss_before) {
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{12}); }), 144)
      << "the pool is not usable after the failed maps";
  pool.close();
  bounded(kLong, "join", [&] { pool.join(); });
  EXPECT_EQ(PoolInternals::core(pool).open_jobs(), 0u) << "a failed map left its job record";
  // Not under AddressSanitizer: it keeps freed memory in quarantine (256 MB) to catch a
  // use after free, so freed 160 MB buffers stay resident. The job record's check above
  // holds there, and LeakSanitizer would report a buffer that nothing frees.
  if (!mqpool_test::kAddressSanitizer) {
    EXPECT_LT(rss(), rss_before + (64 << 20)) << "a failed map's result buffer was not freed";
  }
}

TEST(Longevity, AnInputThatThrowsOrLiesReachesTheCallerAndLeavesNothingBehind) {
  mqpool::Pool pool(2);
  (void)pool.apply(square, std::int64_t{1});  // warm: the agent, executors, buffers
  const std::size_t before = rss();
  // Each claims 20 M items: a 160 MB result buffer, made at once and kept if leaked.
  constexpr std::size_t kClaimed = 20'000'000;
  for (const LyingRange& r : {LyingRange{kClaimed, 5000, true}, LyingRange{kClaimed, 5000, false},
                              LyingRange{3000, 5000, false}}) {
    SCOPED_TRACE(std::to_string(r.claimed) + " claimed, " + std::to_string(r.actual) +
                 (r.throws ? " then a throw" : " yielded"));
    EXPECT_ANY_THROW(bounded(kLong, "map", [&] { return pool.map(square, r, 10); }));
  }
  nothing_left(pool, before);
}

TEST(Longevity, AnImapWhoseInputThrowsRaisesItThenYieldsWhatItReadAndEnds) {
  mqpool::Pool pool(2);
  auto gen = std::views::iota(std::int64_t{0}, std::int64_t{100000}) |
             std::views::transform([](std::int64_t x) {
               if (x == 5000) throw std::runtime_error("the generator failed");
               return x;
             });
  auto stream = pool.imap(square, gen);  // reads the first window (4096) at once
  std::int64_t next = 0;
  bool raised = false;
  while (true) {
    std::optional<std::int64_t> v;
    try {
      v = stream.next(kLong);
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "the generator failed");
      raised = true;
      continue;
    }
    if (!v) break;
    EXPECT_EQ(*v, next * next);
    ++next;
  }
  EXPECT_TRUE(raised);
  EXPECT_EQ(next, 5000) << "every input read before the throw has its result";
  nothing_left(pool, rss() + (64 << 20));
}

}  // namespace
}  // namespace itest
