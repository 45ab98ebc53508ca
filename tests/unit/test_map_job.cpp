// MapJob, where a map's outcomes land on the client: the integer fast path (a whole
// chunk decoded straight into the results) must agree with the general path on
// duplicates, partial overlaps, values that do not fit, and failed tasks.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "mqpool/detail/jobs.hpp"

namespace {

using mqpool::detail::Buffer;
using mqpool::detail::ErrorList;
using mqpool::detail::MapJob;
using mqpool::detail::Reader;
using mqpool::detail::ResultState;

using State = ResultState<std::vector<std::int64_t>>;

struct Fixture {
  explicit Fixture(std::size_t n)
      : state(std::make_shared<State>()), job(state, mqpool::MapOptions<std::int64_t>{}, n, "f") {}
  // Delivers values[0..] as the outcomes of tasks first.. (msgpack integers).
  std::uint32_t deliver(std::uint64_t first, const std::vector<std::int64_t>& values,
                        const ErrorList& errors = {}) {
    Buffer b;
    for (std::int64_t v : values) mqpool::detail::pack_integer(b, v);
    Reader r(b.data(), b.size());
    const auto fresh = job.deliver(first, static_cast<std::uint32_t>(values.size()), r, errors);
    EXPECT_TRUE(r.at_end()) << "every outcome read";
    return fresh;
  }
  std::shared_ptr<State> state;
  MapJob<std::int64_t> job;
};

std::vector<std::int64_t> squares(std::int64_t from, std::int64_t n) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = from; i < from + n; ++i) v.push_back(i * i * (i % 3 == 0 ? -1 : 1));
  return v;
}

TEST(MapJob, WholeChunksOfIntegersLandInPlace) {
  Fixture f(200);
  EXPECT_EQ(f.deliver(100, squares(100, 100)), 100u);
  EXPECT_FALSE(f.state->ready());
  EXPECT_EQ(f.deliver(0, squares(0, 100)), 100u);
  ASSERT_TRUE(f.state->ready());
  EXPECT_EQ(f.state->take(), squares(0, 200));
}

TEST(MapJob, ADuplicateChunkChangesNothing) {
  Fixture f(130);  // chunks that straddle the 64-task words of the bitmap
  EXPECT_EQ(f.deliver(10, squares(10, 70)), 70u);
  EXPECT_EQ(f.deliver(10, std::vector<std::int64_t>(70, 7)), 0u) << "a retried chunk's late answer";
  EXPECT_EQ(f.deliver(0, squares(0, 10)), 10u);
  EXPECT_EQ(f.deliver(80, squares(80, 50)), 50u);
  ASSERT_TRUE(f.state->ready());
  EXPECT_EQ(f.state->take(), squares(0, 130));
}

TEST(MapJob, AnOverlappingChunkFillsOnlyWhatIsMissing) {
  Fixture f(100);
  EXPECT_EQ(f.deliver(40, squares(40, 20)), 20u);
  std::vector<std::int64_t> again = squares(0, 100);
  for (std::int64_t i = 40; i < 60; ++i) again[static_cast<std::size_t>(i)] = -7;
  EXPECT_EQ(f.deliver(0, again), 80u);
  ASSERT_TRUE(f.state->ready());
  EXPECT_EQ(f.state->take(), squares(0, 100));
}

TEST(MapJob, AValueThatDoesNotFitFailsItsTaskAlone) {
  Fixture f(5);
  Buffer b;
  for (std::int64_t v : {1, 4}) mqpool::detail::pack_integer(b, v);
  mqpool::detail::pack_integer(b, std::numeric_limits<std::uint64_t>::max());  // not an int64
  for (std::int64_t v : {16, 25}) mqpool::detail::pack_integer(b, v);
  Reader r(b.data(), b.size());
  EXPECT_EQ(f.job.deliver(0, 5, r, {}), 5u);
  EXPECT_TRUE(r.at_end());
  ASSERT_TRUE(f.state->ready());
  EXPECT_THROW(f.state->take(), mqpool::SerializationError);
}

TEST(MapJob, FailedTasksTakeTheGeneralPath) {
  Fixture f(4);
  Buffer b;
  mqpool::detail::Packer packer(b);
  packer.pack(0);
  packer.pack_nil();  // the failed task's placeholder
  packer.pack(4);
  packer.pack(9);
  Reader r(b.data(), b.size());
  ErrorList errors{{1, mqpool::WireError{mqpool::ErrorCode::task, "ValueError", "bad", "f", ""}}};
  EXPECT_EQ(f.job.deliver(0, 4, r, errors), 4u);
  ASSERT_TRUE(f.state->ready());
  try {
    f.state->take();
    FAIL() << "the failed task's error was not raised";
  } catch (const mqpool::TaskError& e) {
    EXPECT_NE(std::string(e.what()).find("bad"), std::string::npos) << e.what();
  }
}

}  // namespace
