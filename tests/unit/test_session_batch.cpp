// The client session's coalescing of single tasks: calls that wait together, and the
// one-task chunks of one job (chunksize 1), travel as one `coalesced` chunk, and each
// outcome of that chunk reaches its own call or task.
#include <gtest/gtest.h>
#include <poll.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/src/session.hpp"
#include "mqpool/detail/jobs.hpp"

namespace {

namespace proto = mqpool::proto;
using mqpool::detail::ApplyJob;
using mqpool::detail::Buffer;
using mqpool::detail::EncodedChunk;
using mqpool::detail::Session;

// Queues apply_async(f, x) as the pool does: a job of one chunk of one task.
std::shared_ptr<ApplyJob<std::int64_t>> call(Session& s, std::uint64_t job_id, std::int64_t x,
                                             std::uint32_t timeout_ms = 0) {
  auto job = std::make_shared<ApplyJob<std::int64_t>>(mqpool::Callbacks<std::int64_t>{}, "f");
  std::vector<EncodedChunk> chunks(1);
  chunks[0].count = 1;
  mqpool::detail::Packer(chunks[0].args).pack(std::make_tuple(x));
  (void)s.submit(job_id, job, "f", timeout_ms, std::move(chunks), true);
  return job;
}

std::vector<proto::ChunkSpec> specs_of(std::vector<proto::Message>& out) {
  std::vector<proto::ChunkSpec> all;
  for (auto& m : out) {
    EXPECT_EQ(m.cmd, proto::Cmd::submit);
    auto specs = proto::decode<std::vector<proto::ChunkSpec>>(m);
    all.insert(all.end(), specs.begin(), specs.end());
  }
  return all;
}

TEST(SessionBatch, CallsThatWaitTogetherTravelAsOneChunkAndEachOutcomeFindsItsCall) {
  Session s(3);
  auto a = call(s, 1, 10);
  auto b = call(s, 2, 20);
  auto c = call(s, 3, 30);
  std::vector<proto::Message> out;
  ASSERT_TRUE(s.take(out, true));
  const auto specs = specs_of(out);
  ASSERT_EQ(specs.size(), 1u);
  EXPECT_TRUE(specs[0].coalesced);
  EXPECT_EQ(specs[0].count, 3u);
  EXPECT_EQ(specs[0].fn, "f");
  // The arguments of the three calls, in order, in one frame.
  mqpool::detail::Reader args(out[0].frames.at(0).data(), out[0].frames.at(0).size());
  for (std::int64_t want : {10, 20, 30}) {
    std::int64_t v = 0;
    ASSERT_TRUE(args.next_integer_tuple(v));
    EXPECT_EQ(v, want);
  }
  EXPECT_TRUE(args.at_end());

  // The broker answers the middle call alone first (a piece), then the other two.
  auto answer = [&](std::uint64_t first, std::vector<std::int64_t> values,
                    std::vector<std::pair<std::uint32_t, mqpool::WireError>> errors) {
    proto::Message r =
        proto::make(proto::Cmd::result,
                    std::vector<proto::ResultSpec>{{specs[0].job, specs[0].seq + first,
                                                    static_cast<std::uint32_t>(values.size())}});
    r.frames.push_back(proto::encode_errors(errors));
    Buffer v;
    mqpool::detail::Packer packer(v);
    for (std::size_t k = 0; k < values.size(); ++k) {
      const bool failed = !errors.empty() && errors[0].first == k;
      if (failed)
        packer.pack_nil();
      else
        packer.pack(values[k]);
    }
    r.frames.push_back(proto::to_frame(std::move(v)));
    s.deliver(r);
  };
  answer(1, {0}, {{0, mqpool::WireError{mqpool::ErrorCode::task, "E", "b failed", "f", ""}}});
  EXPECT_FALSE(a->state().ready());
  ASSERT_TRUE(b->state().ready());
  EXPECT_THROW(b->state().get(), mqpool::TaskError);
  answer(0, {100, 0, 300}, {});  // a late full answer: b's second outcome is a duplicate
  ASSERT_TRUE(a->state().ready() && c->state().ready());
  EXPECT_EQ(a->state().get(), 100);
  EXPECT_EQ(c->state().get(), 300);
  EXPECT_THROW(b->state().get(), mqpool::TaskError) << "the first outcome stands";
}

// (maxtasksperchild does not stop batches: the broker hands an executor that counts
// chunks one task a piece, test_broker_dispatch.cpp.)
TEST(SessionBatch, NoBatchWhenACallHasATimeLimit) {
  {
    Session s(3);
    (void)call(s, 1, 1);
    (void)call(s, 2, 2);
    (void)call(s, 3, 3, /*timeout_ms=*/500);  // timed alone, and it splits the run
    (void)call(s, 4, 4);
    std::vector<proto::Message> out;
    ASSERT_TRUE(s.take(out, true));
    const auto specs = specs_of(out);
    ASSERT_EQ(specs.size(), 3u);
    EXPECT_TRUE(specs[0].coalesced);
    EXPECT_EQ(specs[0].count, 2u);
    EXPECT_FALSE(specs[1].coalesced);
    EXPECT_EQ(specs[1].timeout_ms, 500u);
    EXPECT_FALSE(specs[2].coalesced) << "a lone call needs no batch";
  }
}

TEST(SessionBatch, TerminateFailsEveryCallOfABatch) {
  Session s(3);
  auto a = call(s, 1, 1);
  auto b = call(s, 2, 2);
  std::vector<proto::Message> out;
  ASSERT_TRUE(s.take(out, true));
  out.clear();
  std::thread failer([&] {
    s.fail_all(mqpool::WireError{mqpool::ErrorCode::pool_state, "", "terminated", "", ""});
  });
  // fail_all waits for the driver to take its request: be the driver, woken as it is.
  pollfd wake{s.wake_fd(), POLLIN, 0};
  const int ready = ::poll(&wake, 1, 10000);
  EXPECT_EQ(ready, 1) << "fail_all did not wake the driver within 10 s";
  EXPECT_TRUE(s.take(out, true));
  if (ready != 1) s.stop();  // releases fail_all: the test fails instead of hanging
  failer.join();
  ASSERT_TRUE(a->state().ready() && b->state().ready());
  EXPECT_THROW(a->state().get(), mqpool::PoolStateError);
  EXPECT_THROW(b->state().get(), mqpool::PoolStateError);
}

// A job that records which tasks it was given outcomes for, and their values.
class RecordingJob final : public mqpool::detail::Job {
 public:
  std::uint32_t deliver(std::uint64_t first, std::uint32_t count, mqpool::detail::Reader& values,
                        const mqpool::detail::ErrorList& /*errors*/) override {
    for (std::uint32_t k = 0; k < count; ++k) {
      std::int64_t v = 0;
      EXPECT_TRUE(values.next_integer(v));
      got.emplace_back(first + k, v);
    }
    return count;
  }
  void fail(const mqpool::WireError& /*e*/) override {}
  std::vector<std::pair<std::uint64_t, std::int64_t>> got;
};

// One-task chunks of job 7 for tasks `first`.. with `arg_bytes` bytes of arguments each
// (an integer tuple, padded with a string when asked for more).
std::vector<EncodedChunk> single_chunks(std::uint64_t first, std::size_t n,
                                        std::size_t arg_bytes = 0) {
  std::vector<EncodedChunk> chunks(n);
  for (std::size_t i = 0; i < n; ++i) {
    chunks[i].first = first + i;
    chunks[i].count = 1;
    mqpool::detail::Packer packer(chunks[i].args);
    if (arg_bytes == 0)
      packer.pack(std::make_tuple(static_cast<std::int64_t>(first + i)));
    else
      packer.pack(
          std::make_tuple(static_cast<std::int64_t>(first + i), std::string(arg_bytes, 'x')));
  }
  return chunks;
}

TEST(SessionBatch, OneTaskChunksOfAJobTravelInBatchesOfConsecutiveTasks) {
  Session s(3);
  auto job = std::make_shared<RecordingJob>();
  auto chunks = single_chunks(0, 150);
  auto later = single_chunks(200, 2);  // not consecutive with task 149: a new batch
  for (auto& c : later) chunks.push_back(std::move(c));
  (void)s.submit(7, job, "f", 0, std::move(chunks), true);
  std::vector<proto::Message> out;
  ASSERT_TRUE(s.take(out, true));
  const auto specs = specs_of(out);
  ASSERT_EQ(specs.size(), 4u);
  const std::uint64_t want_seq[] = {0, 64, 128, 200};
  const std::uint32_t want_count[] = {64, 64, 22, 2};
  for (std::size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(specs[i].job, 7u);
    EXPECT_TRUE(specs[i].coalesced);
    EXPECT_EQ(specs[i].seq, want_seq[i]);
    EXPECT_EQ(specs[i].count, want_count[i]);
  }
  // The second batch holds the arguments of tasks 64..127 in order.
  mqpool::detail::Reader args(out[0].frames.at(1).data(), out[0].frames.at(1).size());
  for (std::int64_t want = 64; want < 128; ++want) {
    std::int64_t v = 0;
    ASSERT_TRUE(args.next_integer_tuple(v));
    EXPECT_EQ(v, want);
  }
  EXPECT_TRUE(args.at_end());

  // A piece of the first batch, as the broker hands it out, reaches tasks 5..7.
  proto::Message r = proto::make(proto::Cmd::result, std::vector<proto::ResultSpec>{{7, 5, 3}});
  r.frames.push_back(proto::encode_errors({}));
  Buffer v;
  mqpool::detail::Packer packer(v);
  for (std::int64_t x : {25, 36, 49}) packer.pack(x);
  r.frames.push_back(proto::to_frame(std::move(v)));
  s.deliver(r);
  const std::vector<std::pair<std::uint64_t, std::int64_t>> want = {{5, 25}, {6, 36}, {7, 49}};
  EXPECT_EQ(job->got, want);
}

TEST(SessionBatch, NoTaskBatchForLargeArgumentsATimeLimitOrChunksOfSeveralTasks) {
  auto specs_for = [](std::vector<EncodedChunk> chunks, std::uint32_t timeout_ms) {
    Session s(3);
    (void)s.submit(7, std::make_shared<RecordingJob>(), "f", timeout_ms, std::move(chunks), true);
    std::vector<proto::Message> out;
    EXPECT_TRUE(s.take(out, true));
    return specs_of(out);
  };
  EXPECT_EQ(specs_for(single_chunks(0, 3, 2048), 0).size(), 3u) << "large arguments";
  EXPECT_EQ(specs_for(single_chunks(0, 3), 500).size(), 3u) << "a time limit";
  std::vector<EncodedChunk> two(1);
  two[0].count = 2;
  mqpool::detail::Packer packer(two[0].args);
  packer.pack(std::make_tuple(std::int64_t{1}));
  packer.pack(std::make_tuple(std::int64_t{2}));
  auto rest = single_chunks(2, 2);
  for (auto& c : rest) two.push_back(std::move(c));
  const auto specs = specs_for(std::move(two), 0);
  ASSERT_EQ(specs.size(), 2u) << "the user's chunk of two stays as it is";
  EXPECT_FALSE(specs[0].coalesced);
  EXPECT_EQ(specs[0].count, 2u);
  EXPECT_TRUE(specs[1].coalesced);
  EXPECT_EQ(specs[1].count, 2u);
  for (const auto& spec : specs_for(single_chunks(0, 3, 2048), 0)) EXPECT_FALSE(spec.coalesced);
}

}  // namespace
