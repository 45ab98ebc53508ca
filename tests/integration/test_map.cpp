// map, map_async, starmap, starmap_async: order, chunksize, callbacks, empty inputs,
// input ranges, and errors (no fail-fast, lowest index wins).
#include <atomic>
#include <filesystem>
#include <future>
#include <list>
#include <mqpool/mqpool.hpp>
#include <numeric>
#include <ranges>
#include <sstream>

#include "helpers.hpp"
#include "tasks.hpp"

namespace itest {
namespace {

std::vector<std::int64_t> iota_vec(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), std::int64_t{0});
  return v;
}

class MapChunks : public ::testing::TestWithParam<int> {};

TEST_P(MapChunks, MapKeepsInputOrder) {
  mqpool::Pool pool(2);
  const auto in = iota_vec(200);
  // jittered sleeps 0..6 ms, so completion order differs from input order.
  const auto out = bounded(kLong, "map", [&] { return pool.map(jittered, in, GetParam()); });
  EXPECT_EQ(out, in);
}

TEST_P(MapChunks, MapAsyncKeepsInputOrder) {
  mqpool::Pool pool(2);
  const auto in = iota_vec(200);
  auto r = pool.map_async(jittered, in, mqpool::MapOptions<std::int64_t>{.chunksize = GetParam()});
  EXPECT_EQ(r.get(kLong), in);
}

TEST_P(MapChunks, StarmapKeepsInputOrder) {
  mqpool::Pool pool(2);
  std::vector<std::tuple<int, int>> in;
  std::vector<int> expected;
  for (int i = 0; i < 150; ++i) {
    in.emplace_back(i, 1000 * i);
    expected.push_back(1001 * i);
  }
  EXPECT_EQ(bounded(kLong, "starmap", [&] { return pool.starmap(add, in, GetParam()); }), expected);
  auto r = pool.starmap_async(add, in, mqpool::MapOptions<int>{.chunksize = GetParam()});
  EXPECT_EQ(r.get(kLong), expected);
}

// 0 = automatic; 1; a chunk size that does not divide the input; one chunk for all.
INSTANTIATE_TEST_SUITE_P(Chunksizes, MapChunks, ::testing::Values(0, 1, 7, 1000));

TEST(Map, DefaultChunksizeArgument) {
  mqpool::Pool pool(2);
  const auto in = iota_vec(50);
  std::vector<std::int64_t> expected;
  for (auto x : in) expected.push_back(x * x);
  EXPECT_EQ(bounded(kLong, "map", [&] { return pool.map(square, in); }), expected);
  std::vector<std::tuple<int, int>> pairs{{1, 2}, {3, 4}};
  EXPECT_EQ(bounded(kLong, "starmap", [&] { return pool.starmap(add, pairs); }),
            (std::vector<int>{3, 7}));
}

// Large results are reserved for huge pages (a mapping of whole 2 MiB pages); small ones
// must not pay for that, and both must hold exactly the right values.
TEST(Map, OnlyLargeResultsCarryExtraCapacity) {
  mqpool::Pool pool(2);
  const auto small = bounded(kLong, "small map", [&] { return pool.map(square, iota_vec(10)); });
  EXPECT_EQ(small.capacity(), small.size());
  const auto in = iota_vec(200000);
  const auto large = bounded(kLong, "large map", [&] { return pool.map(square, in); });
  ASSERT_EQ(large.size(), in.size());
  EXPECT_GE(large.capacity(), large.size());
  for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(large[i], in[i] * in[i]) << i;
}

// map() reads a sized input no further ahead of the outcomes than its bound of encoded
// arguments in flight (64 MiB): 200 inputs of 1 MiB are never all encoded at once. The
// tasks wait at a gate, opened once map has read 60 inputs (the bound allows that) and
// then stopped;
// each appends a byte to a log before its outcome is sent, so whenever the range yields
// an input, "inputs yielded - bytes in the log" bounds the tasks in flight from above.
TEST(Map, ReadsLargeInputsNoFurtherAheadThanItsBound) {
  mqpool::Pool pool(2);
  TempDir dir;
  const std::string gate = dir.file("gate"), log = dir.file("ran");
  write_file_atomically(log, "");
  constexpr std::int64_t kItems = 200;
  constexpr std::size_t kBytes = 1 << 20;
  std::atomic<std::int64_t> yielded{0};
  std::int64_t widest = 0;
  auto inputs = std::views::iota(std::int64_t{0}, kItems) | std::views::transform([&](auto) {
                  const auto ran = static_cast<std::int64_t>(std::filesystem::file_size(log));
                  widest = std::max(widest, yielded++ - ran);
                  return Logged{gate, log, std::vector<char>(kBytes, 'b')};
                });
  auto mapping = std::async(std::launch::async, [&] { return pool.map(logged_size, inputs, 1); });
  EXPECT_TRUE(eventually([&] { return yielded.load() >= 60; })) << "map read " << yielded.load();
  // No task can end before the gate opens, so a map that read on would read everything
  // (in milliseconds); this one must wait at its bound instead.
  EXPECT_FALSE(eventually([&] { return yielded.load() == kItems; }, 1s))
      << "map read all its inputs while no task had an outcome";
  write_file_atomically(gate, "");
  ASSERT_EQ(mapping.wait_for(kLong), std::future_status::ready) << "map did not return";
  const auto out = mapping.get();
  ASSERT_EQ(std::ssize(out), kItems);
  for (auto v : out) EXPECT_EQ(v, static_cast<std::int64_t>(kBytes));
  // 64 tasks of a little over 1 MiB each in flight, plus the chunks read before a wait:
  // one per worker, and the one being filled.
  EXPECT_LE(widest, 64 + 3) << "map read " << widest << " inputs ahead of the tasks that had run";
}

TEST(Map, AcceptsAnyInputRange) {
  mqpool::Pool pool(2);
  const std::list<std::int64_t> list{3, 1, 2};
  EXPECT_EQ(bounded(kLong, "map(list)", [&] { return pool.map(square, list); }),
            (std::vector<std::int64_t>{9, 1, 4}));
  auto view = std::views::iota(std::int64_t{0}, std::int64_t{5}) |
              std::views::transform([](std::int64_t x) { return x + 10; });
  EXPECT_EQ(bounded(kLong, "map(view)", [&] { return pool.map(identity, view); }),
            (std::vector<std::int64_t>{10, 11, 12, 13, 14}));
  std::istringstream text("5 6 7");
  auto single_pass = std::views::istream<std::int64_t>(text);  // an input-only range
  EXPECT_EQ(bounded(kLong, "map(istream_view)", [&] { return pool.map(square, single_pass); }),
            (std::vector<std::int64_t>{25, 36, 49}));
}

TEST(Map, EmptyInputGivesEmptyResultAtOnce) {
  mqpool::Pool pool(2);
  const std::vector<std::int64_t> none;
  EXPECT_TRUE(bounded(kPrompt, "map(empty)", [&] { return pool.map(square, none); }).empty());
  EXPECT_TRUE(bounded(kPrompt, "map(empty, 3)", [&] { return pool.map(square, none, 3); }).empty());
  const std::vector<std::tuple<int, int>> no_pairs;
  EXPECT_TRUE(
      bounded(kPrompt, "starmap(empty)", [&] { return pool.starmap(add, no_pairs); }).empty());

  std::atomic<int> calls{0};
  std::atomic<std::size_t> size{99};
  auto r = pool.map_async(
      square, none,
      mqpool::MapOptions<std::int64_t>{.callback = [&](const std::vector<std::int64_t>& v) {
        size = v.size();
        ++calls;
      }});
  EXPECT_TRUE(r.ready()) << "map_async of an empty input must be ready at once";
  EXPECT_TRUE(r.get(kPrompt).empty());
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(size.load(), 0u);
  auto s = pool.starmap_async(add, no_pairs, mqpool::MapOptions<int>{});
  EXPECT_TRUE(s.get(kPrompt).empty());
}

TEST(MapAsync, CallbackGetsTheWholeVectorOnce) {
  mqpool::Pool pool(2);
  const auto in = iota_vec(100);
  std::atomic<int> calls{0};
  std::atomic<int> errors{0};
  std::vector<std::int64_t> got;
  auto r = pool.map_async(
      identity, in,
      mqpool::MapOptions<std::int64_t>{.chunksize = 3,
                                       .callback =
                                           [&](const std::vector<std::int64_t>& v) {
                                             got = v;
                                             ++calls;
                                           },
                                       .error_callback = [&](const mqpool::Error&) { ++errors; }});
  EXPECT_EQ(r.get(kLong), in);
  // The callback runs before the result is ready, so it has run by now.
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(got, in);
}

TEST(MapAsync, ErrorCallbackGetsTheErrorOnceAndCallbackNever) {
  mqpool::Pool pool(2);
  const auto in = iota_vec(40);
  std::atomic<int> calls{0};
  std::atomic<int> errors{0};
  std::string message;
  // fail_if(x, 7) as a map over x: starmap with a fixed second argument.
  std::vector<std::tuple<std::int64_t, std::int64_t>> args;
  for (auto x : in) args.emplace_back(x, x % 10 == 7 ? x : -1);  // 7, 17, 27, 37 fail
  auto r = pool.starmap_async(fail_if, args,
                              mqpool::MapOptions<std::int64_t>{
                                  .chunksize = 2,
                                  .callback = [&](const std::vector<std::int64_t>&) { ++calls; },
                                  .error_callback =
                                      [&](const mqpool::Error& e) {
                                        message = e.what();
                                        ++errors;
                                      }});
  try {
    r.get(kLong);
    ADD_FAILURE() << "starmap_async with failing tasks succeeded";
  } catch (const mqpool::TaskError& e) {
    EXPECT_EQ(e.remote_message(), "boom 7");
  }
  EXPECT_EQ(errors.load(), 1);
  EXPECT_EQ(calls.load(), 0);
  EXPECT_NE(message.find("boom 7"), std::string::npos) << message;
  EXPECT_FALSE(r.successful());
}

// map's error is the lowest-index failure, even when a higher index fails first, and
// it is raised only after every task has finished (no fail-fast).
void expect_no_fail_fast(mqpool::Pool& pool, bool async) {
  TempDir dir;
  std::vector<Job> jobs;
  for (int i = 0; i < 12; ++i) jobs.push_back(Job{dir.path(), i, 150, false});
  jobs[3] = Job{dir.path(), 3, 1500, true};    // lowest-index failure, fails late
  jobs[8] = Job{dir.path(), 8, 0, true};       // fails early
  jobs[11] = Job{dir.path(), 11, 900, false};  // finishes late
  try {
    if (async) {
      pool.map_async(run_job, jobs, mqpool::MapOptions<std::int64_t>{.chunksize = 1}).get(kLong);
    } else {
      bounded(kLong, "map", [&] { return pool.map(run_job, jobs, 1); });
    }
    ADD_FAILURE() << "map with failing tasks succeeded";
  } catch (const mqpool::TaskError& e) {
    EXPECT_EQ(e.remote_message(), "boom 3") << "not the lowest-index failure";
    EXPECT_EQ(e.task_name(), "run_job");
  }
  for (int i = 0; i < 12; ++i)
    EXPECT_TRUE(file_exists(dir.file("done-" + std::to_string(i))))
        << "map raised before task " << i << " finished";
}

TEST(Map, DoesNotFailFastAndRaisesTheLowestIndexError) {
  mqpool::Pool pool(2);
  expect_no_fail_fast(pool, false);
}

TEST(MapAsync, DoesNotFailFastAndRaisesTheLowestIndexError) {
  mqpool::Pool pool(2);
  expect_no_fail_fast(pool, true);
}

TEST(Starmap, RaisesTheLowestIndexErrorWithChunks) {
  mqpool::Pool pool(2);
  std::vector<std::tuple<std::int64_t, std::int64_t>> args;
  for (std::int64_t x = 0; x < 30; ++x) args.emplace_back(x, (x == 9 || x == 21) ? x : -1);
  for (int chunksize : {0, 1, 4}) {
    try {
      bounded(kLong, "starmap", [&] { return pool.starmap(fail_if, args, chunksize); });
      ADD_FAILURE() << "starmap with failing tasks succeeded, chunksize " << chunksize;
    } catch (const mqpool::TaskError& e) {
      EXPECT_EQ(e.remote_message(), "boom 9") << "chunksize " << chunksize;
    }
  }
}

TEST(Map, NegativeChunksizeIsInvalid) {
  mqpool::Pool pool(2);
  const std::vector<std::int64_t> in{1, 2, 3};
  const std::vector<std::tuple<int, int>> pairs{{1, 2}};
  EXPECT_THROW(pool.map(square, in, -1), std::invalid_argument);
  EXPECT_THROW(pool.map_async(square, in, mqpool::MapOptions<std::int64_t>{.chunksize = -1}),
               std::invalid_argument);
  EXPECT_THROW(pool.starmap(add, pairs, -1), std::invalid_argument);
  EXPECT_THROW(pool.starmap_async(add, pairs, mqpool::MapOptions<int>{.chunksize = -1}),
               std::invalid_argument);
  EXPECT_THROW(pool.imap(square, in, -1), std::invalid_argument);
  EXPECT_THROW(pool.imap_unordered(square, in, -1), std::invalid_argument);
  // The pool is still fine afterwards.
  EXPECT_EQ(bounded(kLong, "map", [&] { return pool.map(square, in); }),
            (std::vector<std::int64_t>{1, 4, 9}));
}

}  // namespace
}  // namespace itest
