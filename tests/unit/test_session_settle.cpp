// The client session settles every task it was given, whatever comes back: a job that
// throws while taking its outcomes, a result without its frames, a job whose input
// failed half way (abandon), a driver thread that fails (break_down). Each would leave
// join() waiting for ever if the pending count missed it.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client/src/session.hpp"
#include "mqpool/detail/jobs.hpp"

namespace {

namespace proto = mqpool::proto;
using mqpool::ErrorCode;
using mqpool::WireError;
using mqpool::detail::ApplyJob;
using mqpool::detail::Buffer;
using mqpool::detail::EncodedChunk;
using mqpool::detail::ErrorList;
using mqpool::detail::Job;
using mqpool::detail::Reader;
using mqpool::detail::Session;
using namespace std::chrono_literals;

// A job that throws from deliver, as one whose values do not decode might.
class ThrowingJob final : public Job {
 public:
  std::uint32_t deliver(std::uint64_t, std::uint32_t, Reader& values, const ErrorList&) override {
    (void)values.next();  // takes part of the chunk first
    throw std::runtime_error("cannot take this value");
  }
  void fail(const WireError& e) override { failed.push_back(e); }
  std::vector<WireError> failed;
};

// Queues `count` tasks of job `id` as one chunk; the driver's take() sends them.
void queue(Session& s, std::uint64_t id, std::shared_ptr<Job> job, std::uint32_t count,
           bool last = true) {
  std::vector<EncodedChunk> chunks(1);
  chunks[0].count = count;
  for (std::uint32_t k = 0; k < count; ++k)
    mqpool::detail::Packer(chunks[0].args).pack(std::make_tuple(std::int64_t{k}));
  (void)s.submit(id, std::move(job), "f", 0, std::move(chunks), last);
}

void take(Session& s) {
  std::vector<proto::Message> out;
  ASSERT_TRUE(s.take(out, true));
}

// A RESULT for tasks first .. first+values-1 of `job`, every value an integer.
proto::Message result(std::uint64_t job, std::uint64_t first, std::vector<std::int64_t> values,
                      bool with_frames = true) {
  proto::Message r = proto::make(
      proto::Cmd::result,
      std::vector<proto::ResultSpec>{{job, first, static_cast<std::uint32_t>(values.size())}});
  if (!with_frames) return r;
  r.frames.push_back(proto::encode_errors({}));
  Buffer v;
  for (std::int64_t x : values) mqpool::detail::Packer(v).pack(x);
  r.frames.push_back(proto::to_frame(std::move(v)));
  return r;
}

// True if wait_idle() returns within `limit`; otherwise the session is stopped (which
// releases it) and false is returned: a regression fails instead of hanging.
bool idle_within(Session& s, std::chrono::milliseconds limit) {
  std::mutex mu;
  std::condition_variable cv;
  bool idle = false;
  std::thread waiter([&] {
    s.wait_idle();
    std::lock_guard lock(mu);
    idle = true;
    cv.notify_all();
  });
  bool in_time;
  {
    std::unique_lock lock(mu);
    in_time = cv.wait_for(lock, limit, [&] { return idle; });
  }
  if (!in_time) s.stop();
  waiter.join();
  return in_time;
}

TEST(SessionSettle, AJobWhoseDeliverThrowsFailsWithSerializationErrorAndSettles) {
  Session s(0);
  auto job = std::make_shared<ThrowingJob>();
  queue(s, 7, job, 2);
  take(s);
  auto r = result(7, 0, {1, 2});
  EXPECT_NO_THROW(s.deliver(r));
  ASSERT_EQ(job->failed.size(), 1u);
  EXPECT_EQ(job->failed[0].code, ErrorCode::serialization);
  EXPECT_NE(job->failed[0].message.find("cannot take this value"), std::string::npos)
      << job->failed[0].message;
  EXPECT_EQ(s.open_jobs(), 0u);
  EXPECT_TRUE(idle_within(s, 5s)) << "wait_idle (join) hangs after a job's deliver threw";
  auto late = result(7, 0, {1, 2});  // a duplicate for the forgotten job: ignored
  EXPECT_NO_THROW(s.deliver(late));
}

TEST(SessionSettle, AResultWithoutItsFramesFailsItsTaskWithSerializationError) {
  Session s(0);
  auto job = std::make_shared<ApplyJob<std::int64_t>>(mqpool::Callbacks<std::int64_t>{}, "f");
  queue(s, 3, job, 1);
  take(s);
  auto r = result(3, 0, {9}, /*with_frames=*/false);
  EXPECT_NO_THROW(s.deliver(r));
  ASSERT_TRUE(job->state().ready());
  EXPECT_THROW(job->state().get(), mqpool::SerializationError);
  EXPECT_TRUE(idle_within(s, 5s)) << "wait_idle (join) hangs after an unreadable result";
}

TEST(SessionSettle, AnAbandonedJobIsForgottenAndItsLateOutcomesIgnored) {
  Session s(0, /*keep_sent=*/true);
  auto job = std::make_shared<ApplyJob<std::int64_t>>(mqpool::Callbacks<std::int64_t>{}, "f");
  queue(s, 5, job, 3, /*last=*/false);  // more would have come, but the input threw
  take(s);
  EXPECT_EQ(s.open_jobs(), 1u);
  EXPECT_EQ(s.unanswered(), 1u);
  s.abandon(5);
  take(s);
  EXPECT_EQ(s.open_jobs(), 0u);
  EXPECT_EQ(s.unanswered(), 0u) << "its chunks would be sent again after a broker restart";
  EXPECT_TRUE(idle_within(s, 5s));
  auto late = result(5, 0, {0, 1, 4});
  EXPECT_NO_THROW(s.deliver(late));
  EXPECT_FALSE(job->state().ready()) << "an abandoned job got an outcome";
}

TEST(SessionSettle, ABrokenDownSessionFailsSentAndQueuedTasksAndRefusesNewOnes) {
  Session s(0);
  auto sent = std::make_shared<ApplyJob<std::int64_t>>(mqpool::Callbacks<std::int64_t>{}, "f");
  auto queued = std::make_shared<ApplyJob<std::int64_t>>(mqpool::Callbacks<std::int64_t>{}, "f");
  queue(s, 1, sent, 1);
  take(s);
  queue(s, 2, queued, 1);  // not yet taken when the driver fails
  s.break_down(WireError{ErrorCode::pool_state, "", "the broker thread failed: boom", "", ""});
  for (auto* job : {sent.get(), queued.get()}) {
    ASSERT_TRUE(job->state().ready());
    try {
      job->state().get();
      ADD_FAILURE() << "a task succeeded after the break-down";
    } catch (const mqpool::PoolStateError& e) {
      EXPECT_NE(std::string(e.what()).find("boom"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(idle_within(s, 5s));
  auto late = std::make_shared<ApplyJob<std::int64_t>>(mqpool::Callbacks<std::int64_t>{}, "f");
  EXPECT_THROW(queue(s, 3, late, 1), mqpool::PoolStateError);
  // terminate() after it: nothing left to fail, and it does not wait for a driver.
  s.fail_all(WireError{ErrorCode::pool_state, "", "terminated", "", ""});
}

}  // namespace
