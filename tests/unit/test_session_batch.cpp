// The client session's coalescing of single calls: calls that wait together travel as
// one `coalesced` chunk, and each outcome of that chunk reaches its own call.
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
  Session s(3, true);
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

TEST(SessionBatch, NoBatchWhenCoalescingIsOffOrACallHasATimeLimit) {
  {
    Session s(3, false);  // executors that count chunks (maxtasksperchild)
    for (std::uint64_t j = 1; j <= 3; ++j) (void)call(s, j, 1);
    std::vector<proto::Message> out;
    ASSERT_TRUE(s.take(out, true));
    const auto specs = specs_of(out);
    ASSERT_EQ(specs.size(), 3u);
    for (const auto& spec : specs) EXPECT_FALSE(spec.coalesced);
  }
  {
    Session s(3, true);
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
  Session s(3, true);
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

}  // namespace
