// BrokerCore dispatch: SUBMIT -> TASK within credit, DONE -> RESULT, load balancing,
// bundling. No sockets, no sleeps: the harness feeds messages and reads the outbox.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "broker_harness.hpp"

namespace unit_broker {
namespace {

TEST(BrokerDispatch, NothingIsSentWithoutAnExecutor) {
  Harness h;
  h.submit("c1", {chunk(0, 4), chunk(4, 2)}, {int_args(0, 4), int_args(4, 2)});
  EXPECT_TRUE(h.take().empty());
  EXPECT_EQ(h.core.queued(), 2u);
  EXPECT_EQ(h.core.running(), 0u);
  EXPECT_EQ(h.core.counters().submitted, 6u);  // tasks, not chunks
}

TEST(BrokerDispatch, ChunksGoToAReadyExecutorAsTaskMessagesNeverBeyondItsCredit) {
  Harness h;
  h.teach_cheap();  // a second TASK goes to a busy executor only behind known-short work
  h.ready(1, 100, /*credit=*/2, /*max_bundle=*/1);
  EXPECT_TRUE(h.take().empty());
  h.submit("c1", {chunk(10, 3), chunk(13), chunk(14), chunk(15), chunk(16)},
           {int_args(10, 3), int_args(13), int_args(14), int_args(15), int_args(16)});
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 2u);  // credit 2: two TASK messages, no more
  for (const auto& s : sent) {
    EXPECT_EQ(s.side, Side::worker);
    EXPECT_EQ(s.cmd, Cmd::task);
    EXPECT_EQ(s.peer, exec(1, 100));
    ASSERT_EQ(s.tasks.size(), 1u);
    ASSERT_EQ(s.frames.size(), 1u);  // one args frame per chunk
  }
  // Queue order, with the chunk's count, function and argument bytes as submitted.
  EXPECT_EQ(sent[0].tasks[0].count, 3u);
  EXPECT_EQ(sent[0].tasks[0].fn, "fn");
  EXPECT_EQ(bytes(sent[0].frames[0]), int_args(10, 3));
  EXPECT_EQ(sent[1].tasks[0].count, 1u);
  EXPECT_EQ(bytes(sent[1].frames[0]), int_args(13));
  EXPECT_NE(sent[0].tasks[0].chunk, sent[1].tasks[0].chunk);
  EXPECT_EQ(h.core.queued(), 3u);
  EXPECT_EQ(h.core.running(), 2u);

  h.submit_singles("c1", 17, 1);  // more work, but no credit left
  EXPECT_TRUE(h.take().empty());

  h.answer(sent[0]);  // one DONE returns one credit: exactly one more TASK
  auto next = h.take();
  ASSERT_EQ(only(next, Cmd::result).size(), 1u);
  const auto tasks = only(next, Cmd::task);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(bytes(tasks[0]->frames[0]), int_args(14));
}

TEST(BrokerDispatch, CreditCountsTaskMessagesEvenWhenTheyCarrySeveralChunks) {
  Harness h;
  h.teach_cheap();
  h.ready(1, 100, /*credit=*/1);
  h.submit_singles("c1", 0, 40);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_GT(sent[0].tasks.size(), 1u);
  h.submit_singles("c1", 40, 40);
  EXPECT_TRUE(h.take().empty());
  h.answer(sent[0]);
  EXPECT_EQ(only(h.take(), Cmd::task).size(), 1u);
}

TEST(BrokerDispatch, AnExecutorThatJoinsLateGetsTheQueuedWork) {
  Harness h;
  h.submit_singles("c1", 0, 1);
  h.ready(3, 300);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].peer, exec(3, 300));
  EXPECT_EQ(h.core.executors(), 1u);
}

TEST(BrokerDispatch, DoneForwardsAResultToTheRightClientWithTheFramesUnchanged) {
  Harness h;
  h.teach_cheap();  // a second TASK goes to a busy executor only behind known-short work
  h.ready(1, 100, 2, 1);
  h.submit("alice", {chunk(7, 2)}, {int_args(0, 2)});
  h.submit("bob", {chunk(50, 1)}, {int_args(5)});
  auto tasks = h.take();
  ASSERT_EQ(tasks.size(), 2u);
  const std::uint64_t alice_chunk = tasks[0].tasks[0].chunk;
  const std::uint64_t bob_chunk = tasks[1].tasks[0].chunk;

  // bob's outcome first, with an error; the frames must reach bob byte for byte and
  // without a copy (the broker moves payload frames, it never re-encodes them). Both are
  // longer than ZeroMQ's inline "very small message" size, so data() is the buffer's.
  const std::string errors = bytes(proto::encode_errors(
      {{0, mqpool::WireError{mqpool::ErrorCode::task, "E", std::string(100, 'm'), "fn", "h:1"}}}));
  const std::string values(64, '\xc0');
  proto::Message done = proto::make(Cmd::done, std::vector<std::uint64_t>{bob_chunk}, exec(1, 100));
  done.frames.emplace_back(errors.data(), errors.size());
  done.frames.emplace_back(values.data(), values.size());
  const void* errors_data = done.frames[0].data();
  const void* values_data = done.frames[1].data();
  h.core.on_worker(std::move(done), h.now);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].side, Side::client);
  EXPECT_EQ(sent[0].cmd, Cmd::result);
  EXPECT_EQ(sent[0].peer, "bob");
  ASSERT_EQ(sent[0].results.size(), 1u);
  EXPECT_EQ(sent[0].results[0].seq, 50u);
  EXPECT_EQ(sent[0].results[0].count, 1u);
  ASSERT_EQ(sent[0].frames.size(), 2u);
  EXPECT_EQ(bytes(sent[0].frames[0]), errors);
  EXPECT_EQ(bytes(sent[0].frames[1]), values);
  EXPECT_EQ(sent[0].frames[0].data(), errors_data);
  EXPECT_EQ(sent[0].frames[1].data(), values_data);

  h.done(exec(1, 100), {alice_chunk}, {{"", "\x01\x02"}});
  sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].peer, "alice");
  EXPECT_EQ(sent[0].results[0].seq, 7u);
  EXPECT_EQ(sent[0].results[0].count, 2u);
  EXPECT_EQ(sent[0].frames[0].size(), 0u);
  EXPECT_EQ(bytes(sent[0].frames[1]), "\x01\x02");

  EXPECT_EQ(h.core.running(), 0u);
  EXPECT_EQ(h.core.queued(), 0u);
  EXPECT_EQ(h.core.counters().done, 3u + 1u);  // and the one teach_cheap() ran
  EXPECT_EQ(h.core.counters().failed, 1u);
  EXPECT_EQ(h.core.counters().duplicates, 0u);
}

TEST(BrokerDispatch, OneDoneForABundleAnswersEachChunkToItsOwnClient) {
  Harness h;
  h.teach_cheap();
  h.submit("alice", {chunk(0), chunk(1)}, {int_args(0), int_args(1)});
  h.submit("bob", {chunk(0), chunk(1)}, {int_args(10), int_args(11)});
  h.ready(1, 100, 1);  // 4 queued, 1 executor: a bundle of 2
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  ASSERT_GE(sent[0].tasks.size(), 2u);
  h.answer(sent[0]);
  // One RESULT per client, carrying each of that client's chunks with its two frames.
  std::multiset<std::string> to;
  std::size_t chunks = 0;
  for (const auto& r : only(h.take(), Cmd::result)) {
    to.insert(r.peer);
    EXPECT_EQ(r.frames.size(), 2 * r.results.size());
    chunks += r.results.size();
    if (r.peer == "alice") {
      EXPECT_EQ(r.results.size(), 2u);
    }
  }
  EXPECT_EQ(chunks, sent[0].tasks.size());
  EXPECT_EQ(to.count("alice"), 1u);
}

TEST(BrokerDispatch, IdleExecutorsGetWorkBeforeBusyOnes) {
  Harness h;
  h.ready(1, 100, 2);
  h.ready(2, 200, 2);
  h.submit_singles("c1", 0, 2);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 2u);  // one each, though either could have taken both
  EXPECT_NE(sent[0].peer, sent[1].peer);
  EXPECT_EQ(sent[0].tasks.size(), 1u);
  EXPECT_EQ(sent[1].tasks.size(), 1u);
}

TEST(BrokerDispatch, ANewChunkGoesToTheIdleExecutorNotToTheOneWithWorkAndCredit) {
  Harness h;
  h.ready(1, 100, 4);
  h.submit_singles("c1", 0, 1);
  ASSERT_EQ(h.take().size(), 1u);  // executor 1 now has one chunk in flight
  h.ready(2, 200, 4);
  EXPECT_TRUE(h.take().empty());
  h.submit_singles("c1", 1, 1);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].peer, exec(2, 200));
}

TEST(BrokerDispatch, DeepQueuesAreBundledInSubmissionOrder) {
  Harness h;
  h.teach_cheap();
  h.submit_singles("c1", 0, 100);
  h.ready(1, 100, 1);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  const auto& t = sent[0];
  ASSERT_GT(t.tasks.size(), 1u);
  ASSERT_EQ(t.frames.size(), t.tasks.size());
  std::set<std::uint64_t> ids;
  for (std::size_t i = 0; i < t.tasks.size(); ++i) {
    ids.insert(t.tasks[i].chunk);
    EXPECT_EQ(bytes(t.frames[i]), int_args(static_cast<int>(i))) << "chunk " << i;
  }
  EXPECT_EQ(ids.size(), t.tasks.size());
  EXPECT_EQ(h.core.running(), t.tasks.size());
  EXPECT_EQ(h.core.queued(), 100 - t.tasks.size());
}

TEST(BrokerDispatch, TasksOfUnknownCostAreNotBundled) {
  Harness h;
  h.submit_singles("c1", 0, 100);
  h.ready(1, 100, 1);  // a deep queue, but nothing is known of the task's cost yet
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].tasks.size(), 1u);
}

TEST(BrokerDispatch, ExpensiveTasksAreNotBundled) {
  Harness h;
  h.ready(1, 100, 1);
  h.submit_singles("c1", 0, 1);
  auto first = h.take();
  h.now += std::chrono::milliseconds(50);  // the task took 50 ms
  h.submit_singles("c1", 1, 100);
  h.answer(first.at(0));
  auto next = only(h.take(), Cmd::task);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].tasks.size(), 1u);
}

TEST(BrokerDispatch, ABusyExecutorGetsASecondTaskOnlyBehindKnownShortWork) {
  Harness h;
  h.ready(1, 100, /*credit=*/2);
  h.submit_singles("c1", 0, 1);
  auto first = h.take();
  ASSERT_EQ(first.size(), 1u);
  h.submit_singles("c1", 1, 1);
  EXPECT_TRUE(h.take().empty()) << "prefetched behind a task of unknown length";
  h.now += std::chrono::microseconds(10);
  h.answer(first[0]);  // now the task is known to be short
  auto second = only(h.take(), Cmd::task);
  ASSERT_EQ(second.size(), 1u);
  h.submit_singles("c1", 2, 1);
  EXPECT_EQ(only(h.take(), Cmd::task).size(), 1u) << "no prefetch behind known-short work";
}

// The end of a job: the last queued chunk, when it holds much work, goes out in halves
// (and the half left is halved again when its turn comes), so that the executors finish
// together instead of one running a long chunk alone while the others idle.
TEST(BrokerDispatch, TheLastLongChunkGoesOutInHalvesSoExecutorsFinishTogether) {
  Harness h;
  h.teach(milliseconds(10));  // a task takes 10 ms
  h.ready(1, 100);
  h.ready(1, 101);
  h.submit("c1", {chunk(100, 16)}, {int_args(100, 16)});  // 160 ms of work, two idle executors
  auto tasks = only(h.take(), Cmd::task);
  ASSERT_EQ(tasks.size(), 2u) << "both executors get a share";
  EXPECT_EQ(tasks[0].tasks.at(0).count, 8u);
  EXPECT_EQ(tasks[1].tasks.at(0).count, 4u) << "the half left, halved again";
  // Every piece carries exactly its own tasks' arguments, and the RESULTs cover the
  // chunk's tasks once each.
  std::map<std::uint64_t, std::vector<int>> args_of;  // chunk id -> the ints it carries
  std::map<std::uint64_t, std::uint32_t> results;     // seq -> count
  std::vector<Sent> pending = std::move(tasks);
  while (!pending.empty()) {
    Sent t = std::move(pending.back());
    pending.pop_back();
    ASSERT_EQ(t.tasks.size(), 1u);
    mqpool::detail::Reader r(t.frames.at(0).data(), t.frames.at(0).size());
    for (std::uint32_t k = 0; k < t.tasks[0].count; ++k) {
      int v = 0;
      ASSERT_TRUE(r.next_integer_tuple(v));
      args_of[t.tasks[0].chunk].push_back(v);
    }
    EXPECT_TRUE(r.at_end()) << "a piece carries another piece's arguments";
    h.answer(t);
    for (Sent& s : h.take()) {
      if (s.cmd == Cmd::task) pending.push_back(std::move(s));
      if (s.cmd == Cmd::result)
        for (const auto& spec : s.results) results[spec.seq] = spec.count;
    }
  }
  std::uint64_t next = 100;
  for (const auto& [seq, count] : results) {
    EXPECT_EQ(seq, next) << "a gap or an overlap in the pieces";
    next += count;
  }
  EXPECT_EQ(next, 116u);
  std::multiset<int> all;
  for (const auto& [id, ints] : args_of) all.insert(ints.begin(), ints.end());
  std::multiset<int> want;
  for (int v = 100; v < 116; ++v) want.insert(v);
  EXPECT_EQ(all, want);
}

TEST(BrokerDispatch, ALongChunkGoesWholeToALoneExecutorAndUnknownWorkGoesWhole) {
  {
    Harness h;  // one executor: nobody to share with
    h.teach(milliseconds(10));
    h.ready(1, 100);
    h.submit("c1", {chunk(100, 16)}, {int_args(100, 16)});
    auto tasks = only(h.take(), Cmd::task);
    ASSERT_EQ(tasks.size(), 1u);
    EXPECT_EQ(tasks[0].tasks.at(0).count, 16u);
  }
  {
    Harness h;  // two executors, but the task's cost is unknown
    h.ready(1, 100);
    h.ready(1, 101);
    h.submit("c1", {chunk(100, 16)}, {int_args(100, 16)});
    auto tasks = only(h.take(), Cmd::task);
    ASSERT_EQ(tasks.size(), 1u);
    EXPECT_EQ(tasks[0].tasks.at(0).count, 16u);
  }
}

TEST(BrokerDispatch, ShallowQueuesAreNotBundled) {
  Harness h;
  for (std::uint32_t pid = 1; pid <= 4; ++pid) h.ready(1, pid, 4);
  h.submit_singles("c1", 0, 4);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 4u);
  std::set<std::string> peers;
  for (const auto& s : sent) {
    EXPECT_EQ(s.tasks.size(), 1u);
    peers.insert(s.peer);
  }
  EXPECT_EQ(peers.size(), 4u);
}

TEST(BrokerDispatch, MaxBundleFromReadyIsHonoured) {
  Harness h;
  h.teach_cheap();
  h.ready(1, 100, /*credit=*/4, /*max_bundle=*/3);
  h.submit_singles("c1", 0, 200);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 4u);
  for (const auto& s : sent) EXPECT_EQ(s.tasks.size(), 3u);  // a deep queue, capped at 3
  EXPECT_EQ(h.core.running(), 12u);
}

TEST(BrokerDispatch, ChunksWithATimeLimitTravelAloneToAnIdleExecutor) {
  Harness h;
  h.submit_singles("c1", 0, 3);
  h.submit_singles("c1", 3, 3, /*timeout_ms=*/1000);
  h.submit_singles("c1", 6, 20);
  h.ready(1, 100, 16);
  std::size_t timed_seen = 0, plain_seen = 0, outstanding = 0;
  bool timed_outstanding = false;
  for (int round = 0; round < 100 && timed_seen + plain_seen < 26; ++round) {
    auto sent = h.take();
    for (const auto& s : sent) {
      if (s.cmd == Cmd::result) continue;
      ASSERT_EQ(s.cmd, Cmd::task);
      EXPECT_FALSE(timed_outstanding) << "work went to an executor running a timed chunk";
      bool timed = false;
      for (const auto& f : s.frames) {
        const std::string a = bytes(f);
        timed = timed || a == int_args(3) || a == int_args(4) || a == int_args(5);
      }
      if (timed) {
        EXPECT_EQ(s.tasks.size(), 1u) << "a timed chunk shared a TASK message";
        EXPECT_EQ(outstanding, 0u) << "a timed chunk went to a busy executor";
        timed_outstanding = true;
        ++timed_seen;
      } else {
        plain_seen += s.tasks.size();
      }
      ++outstanding;
    }
    for (const auto& s : sent)
      if (s.cmd == Cmd::task) h.answer(s);
    outstanding = 0;
    timed_outstanding = false;
  }
  EXPECT_EQ(timed_seen, 3u);
  EXPECT_EQ(plain_seen, 23u);
}

TEST(BrokerDispatch, EveryChunkIsDispatchedOnceAndAnsweredOnce) {
  Harness h;
  for (std::uint32_t pid = 1; pid <= 3; ++pid) h.ready(pid, pid, 2);
  h.submit_singles("a", 0, 300);
  h.submit("b", {chunk(0, 5), chunk(5, 5)}, {int_args(0, 5), int_args(5, 5)});
  std::map<std::pair<std::string, std::uint64_t>, int> results;
  std::set<std::uint64_t> dispatched;
  for (int round = 0; round < 1000 && results.size() < 302; ++round) {
    auto sent = h.take();
    for (const auto& s : sent) {
      if (s.cmd == Cmd::task) {
        for (const auto& t : s.tasks) EXPECT_TRUE(dispatched.insert(t.chunk).second) << t.chunk;
        h.answer(s);
      } else if (s.cmd == Cmd::result) {
        for (const auto& r : s.results) ++results[{s.peer, r.seq}];
      }
    }
  }
  EXPECT_EQ(results.size(), 302u);
  for (const auto& [key, n] : results) EXPECT_EQ(n, 1) << key.first << " " << key.second;
  EXPECT_EQ(h.core.queued(), 0u);
  EXPECT_EQ(h.core.running(), 0u);
  EXPECT_EQ(h.core.counters().done, 310u);
}

// A batch of single calls coalesced by a client session (ChunkSpec::coalesced).
proto::ChunkSpec batch(std::uint64_t seq, std::uint32_t count, std::uint32_t max_retries = 3) {
  proto::ChunkSpec c = chunk(seq, count, 0, max_retries);
  c.coalesced = true;
  return c;
}

// The ints carried by the first chunk of a TASK.
std::vector<int> ints_of(const Sent& t) {
  std::vector<int> out;
  mqpool::detail::Reader r(t.frames.at(0).data(), t.frames.at(0).size());
  for (std::uint32_t k = 0; k < t.tasks.at(0).count; ++k) {
    int v = 0;
    EXPECT_TRUE(r.next_integer_tuple(v));
    out.push_back(v);
  }
  EXPECT_TRUE(r.at_end()) << "a piece carries another piece's arguments";
  return out;
}

TEST(BrokerDispatch, ABatchOfCallsOfUnknownCostGoesOutOneCallAtATime) {
  Harness h;
  h.ready(1, 100);
  h.ready(1, 101);
  h.submit("c1", {batch(10, 5)}, {int_args(10, 5)});
  auto tasks = only(h.take(), Cmd::task);
  ASSERT_EQ(tasks.size(), 2u) << "each idle executor gets a call, as if each were a chunk";
  EXPECT_EQ(tasks[0].tasks.at(0).count, 1u);
  EXPECT_EQ(tasks[1].tasks.at(0).count, 1u);
  EXPECT_EQ(ints_of(tasks[0]), std::vector<int>{10});
  EXPECT_EQ(ints_of(tasks[1]), std::vector<int>{11});
  EXPECT_EQ(h.core.queued(), 1u) << "the other three wait as one batch";
}

// An executor that counts chunks for maxtasksperchild (max_bundle, a cluster worker's
// own flag) must see each task of a batch as one chunk, however cheap the tasks are.
TEST(BrokerDispatch, ABatchGoesOneTaskAtATimeToAnExecutorThatCountsChunks) {
  Harness h;
  h.teach_cheap();
  h.ready(1, 100, /*credit=*/1, /*max_bundle=*/1);
  h.submit("c1", {batch(10, 3)}, {int_args(10, 3)});
  for (int want = 10; want < 13; ++want) {
    auto tasks = only(h.take(), Cmd::task);
    ASSERT_EQ(tasks.size(), 1u) << "task " << want;
    EXPECT_EQ(ints_of(tasks[0]), std::vector<int>{want});
    h.answer(tasks[0]);
  }
  EXPECT_EQ(h.core.queued(), 0u);
}

TEST(BrokerDispatch, ABatchOfExpensiveCallsSpreadsAndACheapOneGoesWhole) {
  Harness h;
  h.teach(milliseconds(10));  // a call takes 10 ms: more than a bundle's worth
  h.ready(1, 100);
  h.ready(1, 101);
  h.submit("c1", {batch(10, 4)}, {int_args(10, 4)});
  std::map<std::string, std::vector<int>> by_executor;
  std::map<std::uint64_t, std::uint32_t> results;  // seq -> count
  std::vector<Sent> pending = only(h.take(), Cmd::task);
  EXPECT_EQ(pending.size(), 2u) << "both executors work on the batch";
  while (!pending.empty()) {
    Sent t = std::move(pending.back());
    pending.pop_back();
    EXPECT_EQ(t.tasks.at(0).count, 1u) << "a 10 ms call travels alone";
    for (int v : ints_of(t)) by_executor[t.peer].push_back(v);
    h.answer(t);
    for (Sent& s : h.take()) {
      if (s.cmd == Cmd::task) pending.push_back(std::move(s));
      if (s.cmd == Cmd::result)
        for (const auto& spec : s.results) results[spec.seq] += spec.count;
    }
  }
  EXPECT_EQ(by_executor.size(), 2u);
  EXPECT_EQ(results, (std::map<std::uint64_t, std::uint32_t>{{10, 1}, {11, 1}, {12, 1}, {13, 1}}));

  Harness cheap;
  cheap.teach_cheap();
  cheap.ready(1, 100);
  cheap.ready(1, 101);
  cheap.submit("c1", {batch(10, 50)}, {int_args(10, 50)});
  auto tasks = only(cheap.take(), Cmd::task);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].tasks.at(0).count, 50u) << "50 cheap calls are one piece";
}

}  // namespace
}  // namespace unit_broker
