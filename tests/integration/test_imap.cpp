// imap and imap_unordered: ResultStream as a range and through next(timeout), order,
// streaming, errors at their position, empty inputs, and lazy reading of endless inputs.
#include <algorithm>
#include <atomic>
#include <map>
#include <mqpool/mqpool.hpp>
#include <ranges>
#include <sstream>

#include "helpers.hpp"
#include "tasks.hpp"

namespace itest {
namespace {

std::vector<std::int64_t> iota_vec(std::int64_t n) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = 0; i < n; ++i) v.push_back(i);
  return v;
}

template <class R>
std::vector<R> drain(mqpool::ResultStream<R>& stream) {
  std::vector<R> out;
  while (auto v = stream.next(kLong)) out.push_back(*v);
  return out;
}

class ImapChunks : public ::testing::TestWithParam<int> {};

TEST_P(ImapChunks, ImapRangeForKeepsInputOrder) {
  mqpool::Pool pool(2);
  const auto in = iota_vec(300);
  std::vector<std::int64_t> out;
  bounded(kLong, "range-for over imap", [&] {
    for (std::int64_t v : pool.imap(jittered, in, GetParam())) out.push_back(v);
  });
  EXPECT_EQ(out, in);
}

TEST_P(ImapChunks, ImapUnorderedYieldsEveryResult) {
  mqpool::Pool pool(2);
  const auto in = iota_vec(300);
  std::vector<std::int64_t> out;
  bounded(kLong, "range-for over imap_unordered", [&] {
    for (std::int64_t v : pool.imap_unordered(jittered, in, GetParam())) out.push_back(v);
  });
  std::sort(out.begin(), out.end());
  EXPECT_EQ(out, in);  // every result, each exactly once
}

INSTANTIATE_TEST_SUITE_P(Chunksizes, ImapChunks, ::testing::Values(1, 4, 1000));

TEST(Imap, DefaultChunksizeAndNextUntilTheEnd) {
  mqpool::Pool pool(2);
  auto stream = pool.imap(square, std::vector<std::int64_t>{1, 2, 3});
  EXPECT_EQ(stream.next(kLong), std::optional<std::int64_t>(1));
  EXPECT_EQ(stream.next(kLong), std::optional<std::int64_t>(4));
  EXPECT_EQ(stream.next(kLong), std::optional<std::int64_t>(9));
  EXPECT_EQ(stream.next(kLong), std::nullopt);
  EXPECT_EQ(stream.next(kLong), std::nullopt);  // stays at the end
}

TEST(Imap, ResultsStreamBeforeLaterTasksFinishAndNextTimesOut) {
  TempDir dir;
  mqpool::Pool pool(2);
  OpenOnExit open_gate(dir.file("gate"));  // even if an assertion fails
  const std::vector<Gate> in{Gate{"", 10}, Gate{dir.file("gate"), 11}, Gate{"", 12}};
  auto stream = pool.imap(gated, in);
  // Position 0 arrives although position 1 cannot finish yet.
  EXPECT_EQ(stream.next(kLong), std::optional<std::int64_t>(10));
  // Position 1 is blocked: next() times out promptly, and position 2 is not skipped to.
  const auto t = elapsed([&] { EXPECT_THROW(stream.next(300ms), mqpool::TimeoutError); });
  EXPECT_LT(t, kPrompt);
  create_file(dir.file("gate"));
  EXPECT_EQ(stream.next(kLong), std::optional<std::int64_t>(11));
  EXPECT_EQ(stream.next(kLong), std::optional<std::int64_t>(12));
  EXPECT_EQ(stream.next(kLong), std::nullopt);
}

TEST(Imap, NextThrowsTimeoutErrorPromptlyWhenATaskIsSlow) {
  mqpool::Pool pool(2);
  auto stream = pool.imap(sleep_ms, std::vector<std::int64_t>{60000});
  const auto t = elapsed([&] { EXPECT_THROW(stream.next(200ms), mqpool::TimeoutError); });
  EXPECT_LT(t, kPrompt);
  bounded(kLong, "terminate", [&] { pool.terminate(); });
  bounded(kLong, "join", [&] { pool.join(); });
}

// Tasks of chunksize 1 travel in batches (the session batches consecutive single
// tasks); the broker must still hand slow ones out one at a time, or one process would
// run them all.
TEST(Imap, SlowTasksOfChunksizeOneStillSpreadOverTheWorkers) {
  mqpool::Pool pool(2);
  auto stream = pool.imap(slow_pid, std::vector<std::int64_t>(6, 200), 1);
  std::map<std::int64_t, int> tasks_by_pid;
  for (std::int64_t pid : drain(stream)) ++tasks_by_pid[pid];
  ASSERT_EQ(tasks_by_pid.size(), 2u) << "one process ran every task";
  for (const auto& [pid, n] : tasks_by_pid)
    EXPECT_LE(n, 4) << "process " << pid << " ran " << n << " of 6 slow tasks";
}

TEST(ImapUnordered, YieldsInCompletionOrder) {
  TempDir dir;
  mqpool::Pool pool(2);
  OpenOnExit open_gate(dir.file("gate"));             // even if an assertion fails
  std::vector<Gate> in{Gate{dir.file("gate"), 100}};  // position 0 waits for the gate
  for (std::int64_t i = 0; i < 20; ++i) in.push_back(Gate{"", i});
  auto stream = pool.imap_unordered(gated, in);
  // An ordered stream would wait here for position 0 until the deadline.
  const auto first = stream.next(kLong);
  ASSERT_TRUE(first.has_value());
  EXPECT_NE(*first, 100);
  create_file(dir.file("gate"));
  auto rest = drain(stream);
  rest.push_back(*first);
  std::sort(rest.begin(), rest.end());
  std::vector<std::int64_t> expected = iota_vec(20);
  expected.push_back(100);
  EXPECT_EQ(rest, expected);
}

TEST(Imap, EmptyInputEndsAtOnce) {
  mqpool::Pool pool(2);
  const std::vector<std::int64_t> none;
  auto a = pool.imap(square, none);
  EXPECT_EQ(bounded(kPrompt, "next", [&] { return a.next(kLong); }), std::nullopt);
  auto b = pool.imap_unordered(square, none, 5);
  EXPECT_EQ(bounded(kPrompt, "next", [&] { return b.next(kLong); }), std::nullopt);
  int n = 0;
  bounded(kPrompt, "range-for over an empty imap", [&] {
    for (std::int64_t v : pool.imap(square, none)) n += static_cast<int>(v) + 1;
    for (std::int64_t v : pool.imap_unordered(square, none)) n += static_cast<int>(v) + 1;
  });
  EXPECT_EQ(n, 0);
}

TEST(Imap, RaisesAFailedTasksErrorAtItsPosition) {
  mqpool::Pool pool(2);
  std::vector<std::int64_t> in = iota_vec(30);
  for (int chunksize : {1, 4}) {
    std::vector<std::int64_t> seen;
    try {
      bounded(kLong, "imap with a failing task", [&] {
        for (std::int64_t v : pool.imap(fail_at_seven, in, chunksize)) seen.push_back(v);
      });
      ADD_FAILURE() << "imap did not raise, chunksize " << chunksize;
    } catch (const mqpool::TaskError& e) {
      EXPECT_EQ(e.remote_message(), "boom 7");
    }
    EXPECT_EQ(seen, iota_vec(7)) << "every earlier result, in order, then the error; chunksize "
                                 << chunksize;
  }
  // The pool still works.
  EXPECT_EQ(bounded(kLong, "map", [&] { return pool.map(square, in); }).at(5), 25);
}

TEST(ImapUnordered, RaisesAFailedTasksErrorWhenItArrives) {
  mqpool::Pool pool(2);
  std::vector<std::int64_t> seen;
  try {
    bounded(kLong, "imap_unordered with a failing task", [&] {
      for (std::int64_t v : pool.imap_unordered(fail_at_seven, iota_vec(30))) seen.push_back(v);
    });
    ADD_FAILURE() << "imap_unordered did not raise";
  } catch (const mqpool::TaskError& e) {
    EXPECT_EQ(e.remote_message(), "boom 7");
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 7), 0);
  EXPECT_LE(seen.size(), 29u);
}

TEST(Imap, AcceptsASinglePassInputRange) {
  mqpool::Pool pool(2);
  std::istringstream text("1 2 3 4 5");
  std::vector<std::int64_t> out;
  bounded(kLong, "imap over istream_view", [&] {
    for (std::int64_t v : pool.imap(square, std::views::istream<std::int64_t>(text)))
      out.push_back(v);
  });
  EXPECT_EQ(out, (std::vector<std::int64_t>{1, 4, 9, 16, 25}));
}

// An unbounded input: imap must read it lazily, a bounded window ahead of the consumer,
// and stop reading when the consumer stops.
void expect_lazy_reading(bool unordered) {
  mqpool::Pool pool(2);
  std::atomic<long> reads{0};
  auto endless =
      std::views::iota(std::int64_t{0}) | std::views::transform([&reads](std::int64_t i) {
        reads.fetch_add(1);
        return i;
      });
  bounded(kLong, "consume 10 results of an endless imap, then drop the stream", [&] {
    auto stream = unordered ? pool.imap_unordered(identity, endless) : pool.imap(identity, endless);
    std::vector<std::int64_t> got;
    for (int i = 0; i < 10; ++i) {
      auto v = stream.next(kLong);
      ASSERT_TRUE(v.has_value());
      got.push_back(*v);
    }
    if (unordered) {
      EXPECT_EQ(std::set<std::int64_t>(got.begin(), got.end()).size(), 10u);
    } else {
      EXPECT_EQ(got, iota_vec(10));
    }
    EXPECT_LT(reads.load(), 100000) << "imap read far ahead of its consumer";
  });
  const long after_drop = reads.load();
  EXPECT_LT(after_drop, 100000);
  // Let the pool run other work for a while; the dropped stream must not read any more.
  for (std::int64_t i = 0; i < 20; ++i)
    EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, i); }), i * i);
  EXPECT_EQ(reads.load(), after_drop) << "the input was still read after the stream was dropped";
}

TEST(Imap, EndlessInputIsReadLazilyAndStopsWithTheConsumer) { expect_lazy_reading(false); }
TEST(ImapUnordered, EndlessInputIsReadLazilyAndStopsWithTheConsumer) { expect_lazy_reading(true); }

}  // namespace
}  // namespace itest
