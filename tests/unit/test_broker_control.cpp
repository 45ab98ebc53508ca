// BrokerCore deadlines (with an injected clock), CANCEL, and malformed messages.
#include <gtest/gtest.h>

#include <set>

#include "broker_harness.hpp"

namespace unit_broker {
namespace {

using mqpool::ErrorCode;
using mqpool::SerializationError;

TEST(BrokerTimeout, ChunksWithoutATimeLimitSetNoDeadline) {
  Harness h;
  EXPECT_EQ(h.core.next_deadline(), TimePoint::max());
  h.greet("c1");
  const TimePoint liveness = h.core.next_deadline();  // the client's heartbeat expiry
  EXPECT_EQ(liveness, h.now + milliseconds(3000));
  h.submit_singles("c1", 0, 3);
  EXPECT_EQ(h.core.next_deadline(), liveness);
  h.ready(1, 100);
  const TimePoint before = h.core.next_deadline();  // executor liveness may set one
  h.submit_singles("c1", 3, 3);
  ASSERT_FALSE(h.take().empty());
  EXPECT_EQ(h.core.next_deadline(), before);
}

TEST(BrokerTimeout, ExpiryKillsTheExecutorAndFailsTheChunkWithTimeout) {
  Harness h;
  h.hello(1);
  h.ready(1, 4242);
  const TimePoint start = h.now;
  h.submit_singles("c1", 3, 1, /*timeout_ms=*/500);
  ASSERT_EQ(h.take().size(), 1u);
  EXPECT_EQ(h.core.next_deadline(), start + milliseconds(500));

  h.now = start + milliseconds(499);
  h.tick();
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.core.running(), 1u);

  h.now = start + milliseconds(500);
  h.tick();
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 2u);
  const auto kills = only(sent, Cmd::kill);
  ASSERT_EQ(kills.size(), 1u);
  EXPECT_EQ(kills[0]->side, Side::worker);
  EXPECT_EQ(kills[0]->peer, proto::agent_id(1));  // to its agent, not to the executor
  EXPECT_EQ(kills[0]->kill_pid, 4242u);
  const auto results = only(sent, Cmd::result);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]->peer, "c1");
  EXPECT_EQ(results[0]->results.at(0).seq, 3u);
  const auto errors = proto::decode_errors(results[0]->frames.at(0));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].second.code, ErrorCode::timeout);
  EXPECT_NE(errors[0].second.message.find("500 ms"), std::string::npos) << errors[0].second.message;
  EXPECT_EQ(errors[0].second.worker, "host:4242");
  EXPECT_EQ(h.core.running(), 0u);
  EXPECT_EQ(h.core.queued(), 0u);

  h.tick();  // expired once: no second KILL or RESULT
  EXPECT_TRUE(h.take().empty());
}

TEST(BrokerTimeout, AKilledExecutorGetsNoMoreWork) {
  Harness h;
  h.hello(1);
  h.ready(1, 10, /*credit=*/4);
  h.submit_singles("c1", 0, 1, 100);
  const std::uint64_t id = h.take().at(0).tasks.at(0).chunk;
  h.now += milliseconds(100);
  h.tick();
  h.take();

  h.submit_singles("c1", 1, 2);
  EXPECT_TRUE(h.take().empty()) << "work went to an executor being killed";
  EXPECT_EQ(h.core.queued(), 2u);
  h.done(exec(1, 10), {id}, {{"", "too late"}});  // its answer after the deadline
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.core.counters().duplicates, 1u);

  h.ready(1, 11, 4);  // the agent's replacement
  auto sent = h.take();
  ASSERT_FALSE(sent.empty());
  for (const auto& s : sent) EXPECT_EQ(s.peer, exec(1, 11));
}

TEST(BrokerTimeout, AChunkThatFinishesInTimeIsNotKilled) {
  Harness h;
  h.hello(1);
  h.ready(1, 10);
  h.submit_singles("c1", 0, 1, 100);
  Sent task = std::move(h.take().at(0));
  h.now += milliseconds(50);
  h.answer(task);
  EXPECT_EQ(only(h.take(), Cmd::result).size(), 1u);
  h.now += milliseconds(500);
  h.tick();
  EXPECT_TRUE(h.take().empty());
  h.submit_singles("c1", 1, 1);
  EXPECT_EQ(only(h.take(), Cmd::task).size(), 1u);  // still a healthy executor
}

TEST(BrokerTimeout, DeadlinesAreCountedFromDispatchNotFromSubmission) {
  Harness h;
  h.hello(1);
  const TimePoint start = h.now;
  h.greet("c1");
  const TimePoint liveness = h.core.next_deadline();  // the client's heartbeat expiry
  h.submit_singles("c1", 0, 1, 200);
  EXPECT_EQ(h.core.next_deadline(), liveness);  // queued: no clock running
  h.now = start + milliseconds(1000);
  h.ready(1, 10);
  ASSERT_EQ(h.take().size(), 1u);
  EXPECT_EQ(h.core.next_deadline(), start + milliseconds(1200));
  h.now = start + milliseconds(1199);
  h.tick();
  EXPECT_TRUE(h.take().empty());
}

TEST(BrokerTimeout, ATimedChunkWaitsForAnIdleExecutorWhichThenTakesNothingElse) {
  Harness h;
  h.hello(1);
  h.ready(1, 10, /*credit=*/2, /*max_bundle=*/1);
  h.submit_singles("c1", 0, 1);                      // executor busy (1 of 2 credits)
  h.submit_singles("c1", 1, 1, /*timeout_ms=*/100);  // must not join it
  auto first = h.take();
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(h.core.queued(), 1u);
  EXPECT_EQ(h.core.next_deadline() <= h.now + milliseconds(100), false);  // not started

  const TimePoint dispatched = h.now += milliseconds(30);
  h.answer(first[0]);
  auto second = only(h.take(), Cmd::task);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(bytes(second[0].frames.at(0)), int_args(1));
  EXPECT_EQ(h.core.next_deadline(), dispatched + milliseconds(100));

  h.submit_singles("c1", 2, 1);  // credit left, but it runs a timed chunk
  EXPECT_TRUE(h.take().empty());
  h.answer(second[0]);
  auto third = only(h.take(), Cmd::task);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_EQ(bytes(third[0].frames.at(0)), int_args(2));
}

TEST(BrokerCancel, DropsTheClientsQueuedChunksAndKillsExecutorsRunningItsChunks) {
  Harness h;
  h.hello(1);
  h.hello(2);
  h.ready(1, 10, 1, 1);
  h.ready(2, 20, 1, 1);
  h.submit_singles("quitter", 0, 4);  // two running, two queued
  h.submit_singles("stayer", 0, 1);   // queued
  const auto running = h.take();
  ASSERT_EQ(running.size(), 2u);
  EXPECT_EQ(h.core.queued(), 3u);

  h.cancel("quitter");
  auto sent = h.take();
  EXPECT_TRUE(only(sent, Cmd::result).empty());  // nobody to answer
  const auto kills = only(sent, Cmd::kill);
  ASSERT_EQ(kills.size(), 2u);
  std::set<std::pair<std::string, std::uint32_t>> killed;
  for (const auto* k : kills) killed.insert({k->peer, k->kill_pid});
  EXPECT_EQ(killed, (std::set<std::pair<std::string, std::uint32_t>>{{proto::agent_id(1), 10},
                                                                     {proto::agent_id(2), 20}}));
  EXPECT_EQ(h.core.queued(), 1u);  // stayer's chunk only
  EXPECT_EQ(h.core.running(), 0u);

  for (const auto& r : running) h.answer(r);  // answers that were already on their way
  EXPECT_TRUE(h.take().empty());

  h.ready(3, 30);
  auto next = h.take();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(bytes(next[0].frames.at(0)), int_args(0));
  h.answer(next[0]);
  auto results = only(h.take(), Cmd::result);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].peer, "stayer");
}

TEST(BrokerCancel, AnotherClientsChunkOnTheKilledExecutorIsRequeuedWithoutPenalty) {
  Harness h;
  h.teach_cheap();  // a second TASK goes to a busy executor only behind known-short work
  h.hello(1);
  h.ready(1, 10, 2, 1);
  h.submit_singles("quitter", 0, 1, 0, /*max_retries=*/0);
  h.submit_singles("stayer", 0, 1, 0, /*max_retries=*/0);
  ASSERT_EQ(h.take().size(), 2u);
  h.cancel("quitter");
  ASSERT_EQ(only(h.take(), Cmd::kill).size(), 1u);
  h.exited(1, 10, "killed by signal 9 (SIGKILL)");
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.core.queued(), 1u);
}

TEST(BrokerCancel, CancelWithNothingToDropIsHarmless) {
  Harness h;
  h.ready(1, 10);
  h.cancel("nobody");
  EXPECT_TRUE(h.take().empty());
  h.submit_singles("c", 0, 1);
  EXPECT_EQ(h.take().size(), 1u);
}

// --- malformed input: a SerializationError and no change of state ----------------------------

struct Snapshot {
  std::size_t queued, running, executors;
  std::uint64_t submitted, done;
  bool operator==(const Snapshot&) const = default;
};

Snapshot snapshot(const BrokerCore& c) {
  return {c.queued(), c.running(), c.executors(), c.counters().submitted, c.counters().done};
}

proto::Message raw(Cmd cmd, std::string header, std::string peer, int frames = 0) {
  proto::Message m;
  m.cmd = cmd;
  m.peer = std::move(peer);
  m.header = zmq::message_t(header.data(), header.size());
  for (int i = 0; i < frames; ++i) m.frames.emplace_back(std::string_view("\x91\x01"));
  return m;
}

TEST(BrokerMalformed, BadHeadersThrowAndLeaveStateUnchanged) {
  Harness h;
  h.hello(1);
  h.ready(1, 10, 1, 1);
  h.submit_singles("c1", 0, 3);
  const Sent task = std::move(h.take().at(0));
  const Snapshot before = snapshot(h.core);

  const std::string two_specs =
      bytes(proto::encode(std::vector<proto::ChunkSpec>{chunk(0), chunk(1)}));
  const std::string one_id =
      bytes(proto::encode(std::vector<std::uint64_t>{task.tasks.at(0).chunk}));
  const std::string exited = bytes(proto::encode(proto::Exited{10, "x", false}));

  struct Case {
    const char* what;
    bool client;
    proto::Message m;
  };
  std::vector<Case> cases;
  cases.push_back({"submit: garbage", true, raw(Cmd::submit, "\xc1", "c1", 1)});
  cases.push_back({"submit: empty header", true, raw(Cmd::submit, "", "c1", 1)});
  cases.push_back({"submit: trailing bytes", true, raw(Cmd::submit, two_specs + "\xc0", "c1", 2)});
  cases.push_back({"submit: 2 specs, 1 frame", true, raw(Cmd::submit, two_specs, "c1", 1)});
  cases.push_back({"submit: 2 specs, 3 frames", true, raw(Cmd::submit, two_specs, "c1", 3)});
  cases.push_back(
      {"submit: huge declared array", true, raw(Cmd::submit, "\xdd\xff\xff\xff\xff", "c1")});
  cases.push_back({"ready: garbage", false, raw(Cmd::ready, "\xc1", exec(1, 11))});
  cases.push_back({"ready: a string", false, raw(Cmd::ready, "\xa1x", exec(1, 11))});
  cases.push_back({"done: garbage", false, raw(Cmd::done, "\xc1", exec(1, 10), 2)});
  cases.push_back({"done: 1 id, 1 frame", false, raw(Cmd::done, one_id, exec(1, 10), 1)});
  cases.push_back({"done: 1 id, 3 frames", false, raw(Cmd::done, one_id, exec(1, 10), 3)});
  cases.push_back({"hello: garbage", false, raw(Cmd::agent_hello, "\x93", proto::agent_id(2))});
  cases.push_back({"exited: garbage", false, raw(Cmd::exited, "\xc1", proto::agent_id(1))});
  cases.push_back({"exited: not an agent", false, raw(Cmd::exited, exited, "c1")});
  cases.push_back({"worker sends kill", false, raw(Cmd::kill, "\x91\x0a", exec(1, 10))});
  for (auto& c : cases) {
    SCOPED_TRACE(c.what);
    if (c.client)
      EXPECT_THROW(h.core.on_client(std::move(c.m), h.now), SerializationError);
    else
      EXPECT_THROW(h.core.on_worker(std::move(c.m), h.now), SerializationError);
    EXPECT_EQ(snapshot(h.core), before);
    EXPECT_TRUE(h.take().empty());
  }
  // Still serving: the real DONE is taken and answered.
  h.answer(task);
  auto sent = h.take();
  EXPECT_EQ(only(sent, Cmd::result).size(), 1u);
  EXPECT_EQ(only(sent, Cmd::task).size(), 1u);
}

// A client declares 4 G tasks in a 2-byte argument frame (a task's argument tuple takes
// at least one byte). The broker must refuse that SUBMIT, or else survive what follows:
// the loop calls on_tick/on_worker and catches nothing but SerializationError.
TEST(BrokerMalformed, ACountTheArgumentBytesCannotHoldIsRefusedOrSurvivedOnTimeout) {
  Harness h;
  h.hello(1);
  h.ready(1, 10);
  const Snapshot before = snapshot(h.core);
  try {
    h.submit("evil", {chunk(0, 0xffffffffu, /*timeout_ms=*/100, /*max_retries=*/0)}, {int_args(0)});
  } catch (const SerializationError&) {
    EXPECT_EQ(snapshot(h.core), before);
    return;  // refused as malformed
  }
  h.take();
  h.now += milliseconds(100);
  EXPECT_NO_THROW(h.tick());
}

TEST(BrokerMalformed, ACountTheArgumentBytesCannotHoldIsRefusedOrSurvivedOnLoss) {
  Harness h;
  h.hello(1);
  h.ready(1, 10);
  const Snapshot before = snapshot(h.core);
  try {
    h.submit("evil", {chunk(0, 0xffffffffu, 0, /*max_retries=*/3)}, {int_args(0)});
  } catch (const SerializationError&) {
    EXPECT_EQ(snapshot(h.core), before);
    return;
  }
  h.take();
  EXPECT_NO_THROW(h.exited(1, 10, "killed by signal 9 (SIGKILL)"));  // e.g. out of memory
}

}  // namespace
}  // namespace unit_broker
