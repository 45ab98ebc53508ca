// BrokerCore when executors die: requeue at the front, split multi-task chunks, retry
// limits, planned exits, late and duplicate DONEs.
#include <gtest/gtest.h>

#include <map>

#include "broker_harness.hpp"

namespace unit_broker {
namespace {

using mqpool::ErrorCode;

const char* const kSigkill = "killed by signal 9 (SIGKILL)";

TEST(BrokerExecutorLoss, ChunksGoBackToTheFrontAndToAnotherExecutor) {
  Harness h;
  h.hello(1);
  h.hello(2);
  h.ready(1, 100, 1, 1);
  h.submit_singles("c1", 0, 3);  // 0 goes to executor 1; 1 and 2 wait
  auto first = h.take();
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(bytes(first[0].frames[0]), int_args(0));

  h.exited(1, 100, kSigkill);
  EXPECT_TRUE(h.take().empty());  // nobody to run it yet
  EXPECT_EQ(h.core.executors(), 0u);
  EXPECT_EQ(h.core.queued(), 3u);
  EXPECT_EQ(h.core.running(), 0u);
  EXPECT_EQ(h.core.counters().retried, 1u);

  h.ready(2, 200, 1, 1);
  auto second = h.take();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].peer, exec(2, 200));
  EXPECT_EQ(bytes(second[0].frames[0]), int_args(0));  // the lost chunk first, not chunk 1
  h.answer(second[0]);
  auto results = only(h.take(), Cmd::result);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].peer, "c1");
  EXPECT_EQ(results[0].results[0].seq, 0u);
}

TEST(BrokerExecutorLoss, AMultiTaskChunkIsRetriedOneTaskAtATime) {
  Harness h;
  h.teach_cheap();  // a second TASK goes to a busy executor only behind known-short work
  h.ready(1, 100, 1);
  const std::string args = int_args(40, 3);  // three objects: (40) (41) (42)
  h.submit("c1", {chunk(20, 3, 0, /*max_retries=*/2)}, {args});
  ASSERT_EQ(h.take().size(), 1u);

  h.exited(1, 100, kSigkill);
  EXPECT_EQ(h.core.queued(), 3u);  // three single-task chunks
  EXPECT_EQ(h.core.running(), 0u);

  // Retried pieces travel alone, each to an idle executor.
  for (std::uint32_t pid = 200; pid < 203; ++pid) h.ready(2, pid, 3, 1);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    ASSERT_EQ(sent[i].tasks.size(), 1u);
    EXPECT_EQ(sent[i].tasks[0].count, 1u);
    EXPECT_EQ(sent[i].tasks[0].fn, "fn");
    // Each piece's bytes are the original object's bytes, in order.
    EXPECT_EQ(bytes(sent[i].frames[0]), int_args(40 + static_cast<int>(i)));
  }
  std::map<std::uint64_t, std::uint32_t> seqs;
  for (const auto& s : sent) h.answer(s);
  for (const auto& r : only(h.take(), Cmd::result)) {
    EXPECT_EQ(r.peer, "c1");
    seqs[r.results.at(0).seq] = r.results.at(0).count;
  }
  EXPECT_EQ(seqs, (std::map<std::uint64_t, std::uint32_t>{{20, 1}, {21, 1}, {22, 1}}));
}

TEST(BrokerExecutorLoss, SplitPiecesKeepTheirLossesAndAStringArgumentSurvivesIntact) {
  Harness h;
  h.teach_cheap();  // a second TASK goes to a busy executor only behind known-short work
  mqpool::detail::Buffer buf;
  mqpool::detail::Packer packer(buf);
  const std::vector<std::string> objects{std::string(300, 'a'), "",
                                         "\xc1\xc1 not msgpack inside a str"};
  std::vector<std::string> pieces;
  for (const auto& o : objects) {
    const std::size_t before = buf.size();
    packer.pack(std::make_tuple(o));
    pieces.emplace_back(buf.data() + before, buf.size() - before);
  }
  h.ready(1, 1, 1);
  h.submit("c1", {chunk(0, 3, 0, /*max_retries=*/1)}, {std::string(buf.data(), buf.size())});
  h.take();
  h.exited(1, 1, kSigkill);  // loss 1 of 2 allowed tries: split
  for (std::uint32_t pid = 2; pid < 5; ++pid) h.ready(2, pid, 3, 1);  // pieces travel alone
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(bytes(sent[i].frames[0]), pieces[i]);
  for (std::uint32_t pid = 2; pid < 5; ++pid) h.exited(2, pid, kSigkill);  // loss 2 for each
  auto failed = only(h.take(), Cmd::result);
  EXPECT_EQ(failed.size(), 3u);
  for (const auto& r : failed) {
    const auto errors = proto::decode_errors(r.frames.at(0));
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].second.code, ErrorCode::worker_lost);
  }
  EXPECT_EQ(h.core.queued() + h.core.running(), 0u);
}

TEST(BrokerExecutorLoss, AfterMaxRetriesLossesTheTaskFailsWithWorkerLost) {
  Harness h;
  h.submit("c1", {chunk(9, 1, 0, /*max_retries=*/2, "crashy")}, {int_args(9)});
  for (std::uint32_t attempt = 1; attempt <= 3; ++attempt) {
    SCOPED_TRACE(attempt);
    h.ready(attempt, attempt);
    auto sent = h.take();
    ASSERT_EQ(sent.size(), 1u);
    ASSERT_EQ(sent[0].cmd, Cmd::task);
    EXPECT_EQ(bytes(sent[0].frames[0]), int_args(9));
    h.exited(attempt, attempt, attempt == 3 ? kSigkill : "exited with code 3");
    if (attempt < 3) {
      EXPECT_TRUE(h.take().empty()) << "failed before its retries ran out";
    }
  }
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].cmd, Cmd::result);
  EXPECT_EQ(sent[0].peer, "c1");
  EXPECT_EQ(sent[0].results.at(0).seq, 9u);
  EXPECT_EQ(sent[0].results.at(0).count, 1u);
  const auto errors = proto::decode_errors(sent[0].frames.at(0));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].first, 0u);
  EXPECT_EQ(errors[0].second.code, ErrorCode::worker_lost);
  EXPECT_NE(errors[0].second.message.find(kSigkill), std::string::npos) << errors[0].second.message;
  EXPECT_NE(errors[0].second.message.find("crashy"), std::string::npos) << errors[0].second.message;
  EXPECT_EQ(errors[0].second.task, "crashy");
  EXPECT_EQ(bytes(sent[0].frames.at(1)), "\xc0");  // a nil value in its place
  EXPECT_EQ(h.core.queued(), 0u);
  EXPECT_EQ(h.core.running(), 0u);
  EXPECT_EQ(h.core.counters().retried, 2u);

  h.ready(9, 9);  // nothing left to run
  EXPECT_TRUE(h.take().empty());
}

TEST(BrokerExecutorLoss, ZeroRetriesFailsAWholeChunkOnTheFirstLoss) {
  Harness h;
  h.ready(1, 1);
  h.submit("c1", {chunk(0, 4, 0, /*max_retries=*/0)}, {int_args(0, 4)});
  h.take();
  h.exited(1, 1, "exited with code 139");
  auto sent = only(h.take(), Cmd::result);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].results.at(0).count, 4u);
  const auto errors = proto::decode_errors(sent[0].frames.at(0));
  ASSERT_EQ(errors.size(), 4u);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_EQ(errors[i].first, i);
  EXPECT_EQ(bytes(sent[0].frames.at(1)), std::string(4, '\xc0'));
}

TEST(BrokerExecutorLoss, PlannedExitsDoNotCountAgainstRetries) {
  Harness h;
  h.submit("c1", {chunk(0, 2, 0, /*max_retries=*/0)}, {int_args(0, 2)});
  for (std::uint32_t pid = 1; pid <= 5; ++pid) {
    h.ready(1, pid);
    auto sent = h.take();
    ASSERT_EQ(sent.size(), 1u) << "planned exit " << pid;
    EXPECT_EQ(sent[0].tasks.at(0).count, 2u);  // requeued whole: not its fault, no split
    h.exited(1, pid, "maxtasksperchild", /*planned=*/true);
    EXPECT_TRUE(only(h.take(), Cmd::result).empty());
  }
  EXPECT_EQ(h.core.queued(), 1u);
  h.ready(1, 6);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  h.exited(1, 6, kSigkill);  // the first unplanned loss with max_retries 0 fails it
  EXPECT_EQ(only(h.take(), Cmd::result).size(), 1u);
}

TEST(BrokerExecutorLoss, ExitedForAnUnknownExecutorChangesNothing) {
  Harness h;
  h.ready(1, 100);
  h.submit_singles("c1", 0, 2);
  h.take();
  h.exited(1, 999, kSigkill);  // another pid of the same agent
  h.exited(2, 100, kSigkill);  // the same pid under another agent
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.core.executors(), 1u);
  EXPECT_EQ(h.core.running(), 1u);
  EXPECT_EQ(h.core.queued(), 1u);
}

TEST(BrokerExecutorLoss, ExitedFromAPeerThatIsNotAnAgentIsRefused) {
  Harness h;
  h.ready(1, 100);
  h.submit_singles("c1", 0, 1);
  h.take();
  proto::Message m = proto::make(Cmd::exited, proto::Exited{100, kSigkill, false}, exec(1, 100));
  EXPECT_THROW(h.core.on_worker(std::move(m), h.now), mqpool::SerializationError);
  EXPECT_EQ(h.core.executors(), 1u);
  EXPECT_EQ(h.core.running(), 1u);
}

TEST(BrokerLateDone, ADoneFromALostExecutorIsDeliveredOnceAndTheSecondDoneIsDropped) {
  Harness h;
  h.ready(1, 100);
  h.submit_singles("c1", 5, 1);
  auto first = h.take();
  ASSERT_EQ(first.size(), 1u);
  const std::uint64_t id = first[0].tasks.at(0).chunk;
  h.exited(1, 100, kSigkill);  // its DONE was already on the wire
  h.ready(2, 200);
  auto second = h.take();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].tasks.at(0).chunk, id);

  h.done(exec(1, 100), {id}, {{"", "late"}});
  auto results = h.take();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].peer, "c1");
  EXPECT_EQ(results[0].results.at(0).seq, 5u);
  EXPECT_EQ(bytes(results[0].frames.at(1)), "late");

  h.done(exec(2, 200), {id}, {{"", "again"}});
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.core.counters().duplicates, 1u);
  EXPECT_EQ(h.core.running(), 0u);

  h.submit_singles("c1", 6, 1);  // executor 2 got its credit back with the duplicate DONE
  auto next = h.take();
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].peer, exec(2, 200));
}

TEST(BrokerLateDone, ALateDoneForAChunkWaitingInTheQueueTakesItOffTheQueue) {
  Harness h;
  h.ready(1, 100);
  h.submit_singles("c1", 0, 1);
  auto first = h.take();
  const std::uint64_t id = first.at(0).tasks.at(0).chunk;
  h.exited(1, 100, kSigkill);
  ASSERT_EQ(h.core.queued(), 1u);
  h.done(exec(1, 100), {id}, {{"", "v"}});
  EXPECT_EQ(only(h.take(), Cmd::result).size(), 1u);
  EXPECT_EQ(h.core.queued(), 0u);
  EXPECT_EQ(h.core.running(), 0u);
  h.ready(2, 200);
  EXPECT_TRUE(h.take().empty()) << "a delivered chunk was dispatched again";
}

// No peer on the worker side can answer for a chunk it was not given: its DONE would
// put results of its making into another client's job.
TEST(BrokerLateDone, ADoneFromAnExecutorThatWasNeverGivenTheChunkIsRefused) {
  Harness h;
  h.ready(1, 100);
  h.ready(2, 200);
  h.submit_singles("c1", 0, 1);
  auto first = h.take();
  ASSERT_EQ(first.size(), 1u);
  const std::uint64_t id = first[0].tasks.at(0).chunk;
  const std::string holder = first[0].peer;
  const std::string other = holder == exec(1, 100) ? exec(2, 200) : exec(1, 100);
  EXPECT_THROW(h.done(other, {id}, {{"", "forged"}}), mqpool::SerializationError);
  EXPECT_TRUE(h.take().empty()) << "a forged result was delivered";
  EXPECT_EQ(h.core.running(), 1u);
  h.done(holder, {id}, {{"", "real"}});
  auto results = only(h.take(), Cmd::result);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(bytes(results[0].frames.at(1)), "real");
}

// A chunk named twice in one DONE is one answer, not two.
TEST(BrokerLateDone, AChunkNamedTwiceInOneDoneIsDeliveredOnce) {
  Harness h;
  h.ready(1, 100);
  h.submit_singles("c1", 0, 1);
  const std::uint64_t id = h.take().at(0).tasks.at(0).chunk;
  h.done(exec(1, 100), {id, id}, {{"", "a"}, {"", "b"}});
  auto results = only(h.take(), Cmd::result);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].results.size(), 1u);
  EXPECT_EQ(h.core.counters().done, 1u);
}

TEST(BrokerLateDone, DoneForAnUnknownChunkIsCountedAsADuplicate) {
  Harness h;
  h.ready(1, 100);
  h.done(exec(1, 100), {12345}, {{"", "v"}});
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.core.counters().duplicates, 1u);
}

// A client controls a chunk's argument bytes; the broker forwards them unread. When such a
// chunk is split after a loss, bytes that do not hold `count` objects must not make the
// broker lose track of chunks: every chunk still ends with exactly one RESULT.
TEST(BrokerExecutorLoss, ALossWithUnsplittableArgumentsLosesNoChunk) {
  Harness h;
  h.teach_cheap();  // a second TASK goes to a busy executor only behind known-short work
  h.ready(1, 100, 2, 1);
  h.submit("evil", {chunk(0, 3)}, {int_args(0, 1) + "\xc1"});  // 3 tasks declared, 1 present
  h.submit("good", {chunk(0, 1)}, {int_args(7)});
  ASSERT_EQ(h.take().size(), 2u);  // both on executor 1
  EXPECT_NO_THROW(h.exited(1, 100, kSigkill));
  h.ready(2, 200, 4, 1);
  std::map<std::string, int> results;
  for (int round = 0; round < 20; ++round) {
    for (const auto& s : h.take()) {
      if (s.cmd == Cmd::task) h.answer(s);
      if (s.cmd == Cmd::result) ++results[s.peer];
    }
  }
  EXPECT_EQ(results["good"], 1);
  EXPECT_GE(results["evil"], 1);  // failed or retried whole, but answered
  EXPECT_EQ(h.core.queued(), 0u);
  EXPECT_EQ(h.core.running(), 0u);
}

}  // namespace
}  // namespace unit_broker

namespace unit_broker {
namespace {

TEST(BrokerExecutorLoss, ADeathInsideABundleCountsAgainstNoneButSplitsThemAll) {
  Harness h;
  h.teach_cheap();
  h.submit("c1", {chunk(0, 2, 0, /*max_retries=*/0), chunk(2, 2, 0, 0)},
           {int_args(0, 2), int_args(2, 2)});
  h.submit_singles("c1", 10, 200, 0, 0);  // a deep queue, so the two chunks travel as one bundle
  h.ready(1, 100, 1);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  ASSERT_GE(sent[0].tasks.size(), 2u);
  h.exited(1, 100, kSigkill);
  // max_retries = 0, yet nothing failed: the culprit is unknown, so no loss is counted.
  EXPECT_TRUE(only(h.take(), Cmd::result).empty());
  // Every task that was on board now travels alone, each to its own idle executor.
  for (std::uint32_t pid = 200; pid < 204; ++pid) h.ready(2, pid, 2);
  auto singles = only(h.take(), Cmd::task);
  ASSERT_EQ(singles.size(), 4u);
  for (const auto& t : singles) {
    ASSERT_EQ(t.tasks.size(), 1u);
    EXPECT_EQ(t.tasks[0].count, 1u);
  }
  h.exited(2, 200, kSigkill);  // a death alone on its executor counts: max_retries 0 fails it
  auto failed = only(h.take(), Cmd::result);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(proto::decode_errors(failed[0].frames.at(0)).at(0).second.code, ErrorCode::worker_lost);
}

TEST(BrokerExecutorLoss, ACrashInABatchOfCallsChargesNoCallButSplitsThem) {
  // With no retries, a map chunk fails whole on its executor's death (above); a batch of
  // single calls, each its own caller's, charges none of them: they are retried alone.
  Harness h;
  h.teach_cheap();
  h.ready(1, 1);
  proto::ChunkSpec spec = chunk(0, 4, 0, /*max_retries=*/0);
  spec.coalesced = true;
  h.submit("c1", {spec}, {int_args(0, 4)});
  auto tasks = only(h.take(), Cmd::task);
  ASSERT_EQ(tasks.size(), 1u);
  ASSERT_EQ(tasks[0].tasks.at(0).count, 4u);
  h.exited(1, 1, "killed by signal 9 (SIGKILL)");
  EXPECT_TRUE(only(h.take(), Cmd::result).empty()) << "no call failed";
  EXPECT_EQ(h.core.queued(), 4u) << "the four calls wait as singles";
  h.ready(1, 2);
  std::uint32_t answered = 0;
  std::vector<Sent> pending = only(h.take(), Cmd::task);
  while (!pending.empty()) {
    Sent t = std::move(pending.back());
    pending.pop_back();
    EXPECT_EQ(t.tasks.size(), 1u) << "a suspect call travels alone";
    EXPECT_EQ(t.tasks.at(0).count, 1u);
    h.answer(t);
    for (Sent& s : h.take()) {
      if (s.cmd == Cmd::task) pending.push_back(std::move(s));
      if (s.cmd == Cmd::result) {
        EXPECT_EQ(s.frames.at(0).size(), 0u) << "no error frame: the call succeeded";
        ++answered;
      }
    }
  }
  EXPECT_EQ(answered, 4u);
  // The culprit alone: its own death is charged, and with no retries it fails.
  spec = chunk(10, 1, 0, 0);
  spec.coalesced = true;
  h.submit("c1", {spec}, {int_args(10)});
  (void)h.take();
  h.exited(1, 2, "killed by signal 9 (SIGKILL)");
  auto failed = only(h.take(), Cmd::result);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(proto::decode_errors(failed[0].frames.at(0)).at(0).second.code,
            mqpool::ErrorCode::worker_lost);
}

}  // namespace
}  // namespace unit_broker

namespace {
// A peer's greeting sets its silence window, but no peer can declare itself patient
// enough to hold its chunks for hours.
TEST(BrokerExpiry, ADeclaredSilenceWindowIsCappedAtTenMinutes) {
  using mqpool::broker::kMaxSilence;
  using mqpool::broker::silence_window;
  EXPECT_EQ(silence_window(1000, 3), std::chrono::seconds(3));
  EXPECT_EQ(silence_window(0, 0), std::chrono::milliseconds(1));
  EXPECT_EQ(silence_window(UINT32_MAX, UINT32_MAX), kMaxSilence);
}
}  // namespace
