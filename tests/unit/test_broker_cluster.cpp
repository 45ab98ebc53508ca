// BrokerCore in a cluster: clients that greet, heartbeat, vanish and come back; fair
// turns between clients; task names that only some workers know; peers on the wrong
// endpoint; draining agents; the status report.
#include <malloc.h>

#include "broker_harness.hpp"

namespace unit_broker {
namespace {

using mqpool::ErrorCode;

proto::Message bare(Cmd cmd, const std::string& peer) {
  return proto::make(cmd, std::vector<int>{}, peer);
}

TEST(BrokerClients, AClientThatHasNotSaidHelloIsToldToAndItsWorkIsNotQueued) {
  Harness h;
  h.ready(1, 10);
  proto::Message m = proto::make(Cmd::submit, std::vector<proto::ChunkSpec>{chunk(0)}, "stranger");
  m.frames.emplace_back(int_args(0).data(), int_args(0).size());
  h.core.on_client(std::move(m), h.now);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].cmd, Cmd::reset);
  EXPECT_EQ(sent[0].peer, "stranger");
  EXPECT_EQ(h.core.queued() + h.core.running(), 0u);
  // After its HELLO the same submission runs.
  h.submit_singles("stranger", 0, 1);
  EXPECT_EQ(only(h.take(), Cmd::task).size(), 1u);
}

TEST(BrokerClients, HeartbeatsAreEchoedToKnownPeersAndAnsweredWithResetOtherwise) {
  Harness h;
  h.greet("c1");
  h.hello(1);
  h.ready(1, 10);
  h.core.on_client(bare(Cmd::heartbeat, "c1"), h.now);
  h.core.on_client(bare(Cmd::heartbeat, "ghost"), h.now);
  h.core.on_worker(bare(Cmd::heartbeat, exec(1, 10) + 'h'), h.now);
  h.core.on_worker(bare(Cmd::heartbeat, exec(1, 11) + 'h'), h.now);  // never said READY
  h.core.on_worker(bare(Cmd::heartbeat, proto::agent_id(1)), h.now);
  h.core.on_worker(bare(Cmd::heartbeat, proto::agent_id(2)), h.now);  // never said hello
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 6u);
  const Cmd expected[] = {Cmd::heartbeat, Cmd::reset,     Cmd::heartbeat,
                          Cmd::reset,     Cmd::heartbeat, Cmd::reset};
  for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(sent[i].cmd, expected[i]) << "message " << i;
}

// A client greets again only when it lost track of the broker; it then resubmits all it
// has no outcome for, so the broker drops what it held of it (no task runs twice for it).
TEST(BrokerClients, ASecondHelloDropsTheClientsEarlierWork) {
  Harness h;
  h.submit_singles("c1", 0, 5);
  EXPECT_EQ(h.core.queued(), 5u);
  h.greet("c1");
  EXPECT_EQ(h.core.queued(), 0u);
  EXPECT_EQ(h.core.clients(), 1u);
}

TEST(BrokerClients, ASilentClientIsDroppedWithItsQueuedAndRunningWork) {
  Harness h;
  h.hello(1);
  h.ready(1, 10);
  h.greet("c1", /*heartbeat_ms=*/100);  // expires after 300 ms of silence
  h.submit_singles("c1", 0, 3);
  ASSERT_EQ(only(h.take(), Cmd::task).size(), 1u);
  h.now += milliseconds(250);
  h.core.on_client(bare(Cmd::heartbeat, "c1"), h.now);  // alive: the clock restarts
  h.now += milliseconds(250);
  h.tick();
  EXPECT_EQ(h.core.clients(), 1u);
  (void)h.take();
  h.now += milliseconds(60);
  ASSERT_LE(h.core.next_deadline(), h.now);
  h.tick();
  EXPECT_EQ(h.core.clients(), 0u);
  EXPECT_EQ(h.core.queued() + h.core.running(), 0u);
  auto kills = only(h.take(), Cmd::kill);
  ASSERT_EQ(kills.size(), 1u);  // the executor running its chunk is freed for others
  EXPECT_EQ(kills[0].kill_pid, 10u);
}

// An agent and its executors connect separately: an executor may be at work before its
// agent's AGENT_HELLO arrives. A KILL for it then waits for that hello instead of being
// lost (the executor would run the dead client's task to its end).
TEST(BrokerClients, AKillForAnExecutorWhoseAgentHasNotSaidHelloIsSentOnTheHello) {
  Harness h;
  h.ready(1, 10);
  h.submit_singles("c1", 0, 1);
  ASSERT_EQ(only(h.take(), Cmd::task).size(), 1u);
  h.core.client_gone("c1");
  EXPECT_TRUE(only(h.take(), Cmd::kill).empty()) << "a KILL to an agent the broker does not know";
  h.hello(1);
  auto kills = only(h.take(), Cmd::kill);
  ASSERT_EQ(kills.size(), 1u) << "the owed KILL was not sent on the agent's hello";
  EXPECT_EQ(kills[0].kill_pid, 10u);
  EXPECT_EQ(kills[0].peer, proto::agent_id(1));
  h.hello(1);  // a second hello (after a RESET) owes nothing
  EXPECT_TRUE(only(h.take(), Cmd::kill).empty());
}

TEST(BrokerClients, AClientWhoseConnectionIsGoneOrWhoSaysByeIsDroppedAtOnce) {
  for (const bool bye : {false, true}) {
    SCOPED_TRACE(bye ? "bye" : "connection gone");
    Harness h;
    h.hello(1);
    h.ready(1, 10);
    h.submit_singles("c1", 0, 3);
    h.submit_singles("c2", 100, 1);
    (void)h.take();
    if (bye)
      h.core.on_client(proto::make(Cmd::bye, proto::Bye{"closing"}, "c1"), h.now);
    else
      h.core.client_gone("c1");
    EXPECT_EQ(h.core.clients(), 1u);
    EXPECT_EQ(only(h.take(), Cmd::kill).size(), 1u);
    h.exited(1, 10, "killed by signal 9 (SIGKILL)");
    h.ready(1, 11);
    auto tasks = only(h.take(), Cmd::task);  // only c2's chunk is left
    ASSERT_EQ(tasks.size(), 1u);
    h.answer(tasks[0]);
    auto results = only(h.take(), Cmd::result);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].peer, "c2");
    EXPECT_EQ(h.core.queued() + h.core.running(), 0u);
  }
}

TEST(BrokerClients, ProbesGoToRemoteClientsOnlyAndShutdownSaysByeToClientsAndAgents) {
  Harness h;
  h.core.add_local_client("local", h.now);
  h.greet("c1");
  h.greet("c2");
  h.hello(1);
  h.core.on_disconnect(h.now);
  auto probes = h.take();
  ASSERT_EQ(probes.size(), 2u);
  for (const auto& p : probes) EXPECT_EQ(p.cmd, Cmd::heartbeat);
  h.core.shutdown("stopping");
  auto byes = h.take();
  ASSERT_EQ(byes.size(), 3u);
  for (const auto& b : byes) {
    EXPECT_EQ(b.cmd, Cmd::bye);
    EXPECT_NE(b.peer, "local");
  }
}

// ZeroMQ reports a closed connection before its ROUTER lets go of the pipe, so a probe
// sent at once may be accepted for a dead client: the probes go again 10 ms, 100 ms
// and 1 s after the disconnect, and then stop.
TEST(BrokerClients, ADisconnectProbesTheClientsNowAndThreeTimesMore) {
  using std::chrono::milliseconds;
  Harness h;
  h.greet("c1", 60000);  // a window far beyond the probes: c1 stays known throughout
  const TimePoint at = h.now;
  h.core.on_disconnect(at);
  EXPECT_EQ(only(h.take(), Cmd::heartbeat).size(), 1u);
  for (const auto after : {milliseconds(10), milliseconds(100), milliseconds(1000)}) {
    EXPECT_EQ(h.core.next_deadline(), at + after);
    h.now = at + after - milliseconds(1);
    h.tick();
    EXPECT_TRUE(only(h.take(), Cmd::heartbeat).empty()) << "a probe before its time";
    h.now = at + after;
    h.tick();
    const auto probes = only(h.take(), Cmd::heartbeat);
    ASSERT_EQ(probes.size(), 1u) << "no probe " << after.count() << " ms after";
    EXPECT_EQ(probes[0].peer, "c1");
  }
  EXPECT_GT(h.core.next_deadline(), at + milliseconds(1000));
  h.now = at + milliseconds(30000);
  h.tick();
  EXPECT_TRUE(only(h.take(), Cmd::heartbeat).empty()) << "the probes went on";
  EXPECT_EQ(h.core.clients(), 1u);
}

// Many clients that come and go leave no trace: the broker runs for weeks.
TEST(BrokerClients, ClientsThatComeAndGoDoNotGrowTheHeap) {
  Harness h;
  h.hello(1);
  h.ready(1, 10, 2);
  auto visit = [&](int i) {
    const std::string id = "client-" + std::to_string(i % 7) + std::string(20, 'x');
    h.greet(id, 1000, /*remember=*/false);
    proto::Message m =
        proto::make(Cmd::submit, std::vector<proto::ChunkSpec>{chunk(0), chunk(1)}, id);
    for (int k = 0; k < 2; ++k) m.frames.emplace_back(int_args(k).data(), int_args(k).size());
    h.core.on_client(std::move(m), h.now);
    if (i % 2 == 0)
      h.core.client_gone(id);
    else
      h.core.on_client(proto::make(Cmd::bye, proto::Bye{"done"}, id), h.now);
    for (const auto& s : h.take()) {
      if (s.cmd == Cmd::kill) {  // its running chunk's executor: replaced
        h.exited(1, s.kill_pid, "killed by signal 9 (SIGKILL)");
        h.ready(1, s.kill_pid + 1, 2);
      }
    }
  };
  int i = 0;
  for (; i < 2000; ++i) visit(i);
  const std::size_t before = mallinfo2().uordblks;
  for (; i < 22000; ++i) visit(i);
  const std::size_t after = mallinfo2().uordblks;
  EXPECT_EQ(h.core.clients(), 0u);
  EXPECT_EQ(h.core.queued() + h.core.running(), 0u);
  const double growth = after > before ? static_cast<double>(after - before) : 0.0;
  EXPECT_LT(growth, 1 << 20) << "the heap grew by " << growth / 20000 << " bytes per client";
}

// One client's long map must not hold back another's single call: turns go to the
// client that has had the least work, not to whoever queued first.
TEST(BrokerFairness, AQueuedMapDoesNotMakeAnotherClientsCallWait) {
  Harness h;
  h.teach_cheap();
  h.ready(1, 10, 1);
  h.ready(1, 11, 1);
  h.submit_singles("mapper", 0, 2000);
  auto first = only(h.take(), Cmd::task);
  ASSERT_EQ(first.size(), 2u);
  h.submit_singles("caller", 5000, 1);
  EXPECT_TRUE(h.take().empty());  // every executor busy
  h.answer(first[0]);
  auto next = only(h.take(), Cmd::task);
  ASSERT_EQ(next.size(), 1u);
  ASSERT_EQ(next[0].tasks.size(), 1u) << "the caller's chunk should go alone, next";
  const std::uint64_t caller_chunk = next[0].tasks[0].chunk;
  h.answer(next[0]);
  auto results = only(h.take(), Cmd::result);
  bool caller_answered = false;
  for (const auto& r : results) caller_answered |= r.peer == "caller";
  EXPECT_TRUE(caller_answered) << "chunk " << caller_chunk;
}

// Weighted by work: a client whose tasks are long gets as much executor time as one
// whose tasks are short, not as many messages.
TEST(BrokerFairness, TurnsFollowWorkDoneNotMessagesSent) {
  Harness h;
  h.ready(99, 9999);
  h.submit_singles("teacher", 1, 1);
  h.submit("teacher", {chunk(2, 1, 0, 3, "slow")}, {int_args(2)});
  auto t = only(h.take(), Cmd::task);
  h.now += std::chrono::microseconds(10);
  h.answer(t.at(0));
  auto t2 = only(h.take(), Cmd::task);
  h.now += milliseconds(10);
  h.answer(t2.at(0));
  h.exited(99, 9999, "done", true);
  (void)h.take();

  h.ready(1, 10, 1);
  std::vector<proto::ChunkSpec> slow;
  std::vector<std::string> args;
  for (int i = 0; i < 50; ++i) {
    slow.push_back(chunk(100 + i, 1, 0, 3, "slow"));
    args.push_back(int_args(i));
  }
  h.submit("slow-client", slow, args);
  h.submit_singles("fast-client", 1000, 500);
  std::map<std::string, int> tasks_by_client;
  std::map<std::uint64_t, std::string> owner;
  for (int round = 0; round < 40; ++round) {
    auto sent = only(h.take(), Cmd::task);
    ASSERT_EQ(sent.size(), 1u);
    const bool is_slow = sent[0].tasks[0].fn == "slow";
    tasks_by_client[is_slow ? "slow" : "fast"] += static_cast<int>(sent[0].tasks.size());
    h.now += is_slow ? milliseconds(10) : std::chrono::microseconds(10 * sent[0].tasks.size());
    h.answer(sent[0]);
  }
  // 40 turns: the slow client's 10 ms tasks get about as much time as the fast client's
  // bundles of 10 us tasks, so it has far fewer tasks, and both progress.
  EXPECT_GT(tasks_by_client["slow"], 0);
  EXPECT_GT(tasks_by_client["fast"], 5 * tasks_by_client["slow"]);
}

// A batch of apply_async calls goes out a piece at a time; each piece is charged what it
// holds, not the rest of the batch it was cut from, so a caller with many calls gets its
// turns beside a map.
TEST(BrokerFairness, ABatchOfCallsIsChargedPerPieceSent) {
  Harness h;
  h.teach(std::chrono::microseconds(1000));
  h.ready(1, 10, 1);
  h.ready(1, 11, 1);
  h.submit_singles("mapper", 0, 400);
  proto::ChunkSpec batch = chunk(std::uint64_t{1} << 40, 40);
  batch.coalesced = true;
  h.submit("caller", {batch}, {int_args(0, 40)});
  std::map<std::string, std::uint32_t> answered;
  for (int round = 0; round < 40; ++round) {
    for (const auto& s : h.take()) {
      if (s.cmd == Cmd::result)
        for (const auto& r : s.results) answered[s.peer] += r.count;
      if (s.cmd != Cmd::task) continue;
      for (const auto& t : s.tasks) h.now += milliseconds(1) * t.count;
      h.answer(s);
    }
  }
  // Equal cost per task: the two clients' shares of the answered tasks are about equal.
  EXPECT_GT(answered["caller"], answered["mapper"] / 2);
  EXPECT_GT(answered["mapper"], answered["caller"] / 2);
}

TEST(BrokerTaskNames, AnExecutorGetsOnlyTasksItsAgentAnnounced) {
  Harness h;
  h.hello(1, {"a"});
  h.hello(2, {"b"});
  h.ready(1, 10);
  h.ready(2, 20);
  h.submit("c", {chunk(0, 1, 0, 3, "b"), chunk(1, 1, 0, 3, "b")}, {int_args(0), int_args(1)});
  auto tasks = only(h.take(), Cmd::task);
  ASSERT_EQ(tasks.size(), 1u);  // only agent 2's executor runs "b"
  EXPECT_EQ(tasks[0].peer, exec(2, 20));
  h.submit("d", {chunk(2, 1, 0, 3, "a")}, {int_args(2)});  // c's own queue waits for agent 2
  tasks = only(h.take(), Cmd::task);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].peer, exec(1, 10));
}

TEST(BrokerTaskNames, ATaskNoConnectedWorkerKnowsFailsAfterTheGraceButOnlyWithWorkersThere) {
  Harness h;
  h.core.set_unknown_task_grace(milliseconds(500));
  h.submit("c", {chunk(0, 2, 0, 3, "nobody.knows")}, {int_args(0, 2)});
  h.now += milliseconds(2000);
  h.tick();
  EXPECT_TRUE(h.take().empty()) << "with no worker at all, work waits for the first";
  EXPECT_EQ(h.core.queued(), 1u);

  h.hello(1, {"fn"});
  h.ready(1, 10);
  h.tick();
  EXPECT_TRUE(h.take().empty()) << "a worker that knows it may still be joining";
  h.now += milliseconds(499);
  h.tick();
  EXPECT_TRUE(h.take().empty());
  h.now += milliseconds(1);
  ASSERT_LE(h.core.next_deadline(), h.now);
  h.tick();
  auto results = only(h.take(), Cmd::result);
  ASSERT_EQ(results.size(), 1u);
  const auto errors = proto::decode_errors(results[0].frames.at(0));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].second.code, ErrorCode::unknown_task);
  EXPECT_NE(errors[0].second.message.find("nobody.knows"), std::string::npos);
  EXPECT_EQ(h.core.queued(), 0u);
}

TEST(BrokerTaskNames, AWorkerThatKnowsTheTaskArrivingInTimeRunsIt) {
  Harness h;
  h.core.set_unknown_task_grace(milliseconds(500));
  h.hello(1, {"fn"});
  h.ready(1, 10);
  h.submit("c", {chunk(0, 1, 0, 3, "late")}, {int_args(0)});
  h.now += milliseconds(300);
  h.tick();
  h.hello(2, {"late"});
  h.ready(2, 20);
  auto tasks = only(h.take(), Cmd::task);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].peer, exec(2, 20));
  h.now += milliseconds(1000);
  h.tick();
  EXPECT_TRUE(only(h.take(), Cmd::result).empty());
}

// A worker pointed at the client endpoint, or a client at the worker endpoint, is told
// so in words; nothing of it is registered.
TEST(BrokerEndpoints, PeersOnTheWrongEndpointAreRefusedWithTheReason) {
  Harness h;
  h.core.on_client(proto::make(Cmd::ready, proto::Ready{1, 11, "h", 1, 0}, exec(1, 11)), h.now);
  h.core.on_client(proto::make(Cmd::agent_hello, proto::AgentHello{1, 2, "h", {}, 1, 1000, 3},
                               proto::agent_id(1)),
                   h.now);
  h.core.on_worker(proto::make(Cmd::hello, proto::Hello{1, "h:1", 1000, 3}, "c1"), h.now);
  auto out = h.core.take_outbox();
  ASSERT_EQ(out.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out[i].msg.cmd, Cmd::refused);
    const std::string reason = proto::decode<proto::Bye>(out[i].msg).reason;
    EXPECT_NE(reason.find(i < 2 ? "--backend" : "--frontend"), std::string::npos) << reason;
  }
  EXPECT_EQ(h.core.executors(), 0u);
  EXPECT_EQ(h.core.agents(), 0u);
  EXPECT_EQ(h.core.clients(), 0u);
}

// SIGTERM to an agent: its executors finish what they run and get nothing new; their
// unstarted work goes back with their planned exit, counting no loss.
TEST(BrokerDrain, ALeavingAgentGetsNoNewWorkAndHandsBackTheRestWithoutALoss) {
  Harness h;
  h.teach_cheap();
  h.hello(1);
  h.hello(2);
  h.ready(1, 10, 2);
  h.submit_singles("c", 0, 4, 0, /*max_retries=*/0);
  auto tasks = only(h.take(), Cmd::task);
  ASSERT_EQ(tasks.size(), 2u);  // one running, one prefetched
  h.core.on_worker(bare(Cmd::leaving, proto::agent_id(1)), h.now);
  h.answer(tasks[0]);
  std::size_t results = 0;
  for (const auto& s : h.take()) {
    EXPECT_NE(s.cmd, Cmd::task) << "a leaving agent's executor got new work";
    if (s.cmd == Cmd::result) results += s.results.size();
  }
  h.exited(1, 10, "exited with code 75", /*planned=*/true);
  h.ready(2, 20, 4);
  for (int round = 0; round < 10; ++round)
    for (const auto& s : h.take()) {
      if (s.cmd == Cmd::task) h.answer(s);
      if (s.cmd == Cmd::result) {
        results += s.results.size();
        for (std::size_t k = 0; k < s.results.size(); ++k)
          EXPECT_EQ(s.frames.at(2 * k).size(), 0u) << "a task failed";
      }
    }
  EXPECT_EQ(results, 4u);
  EXPECT_EQ(h.core.queued() + h.core.running(), 0u);
}

TEST(BrokerStatus, TheReportNamesWorkersClientsAndCounts) {
  Harness h;
  h.core.on_worker(
      proto::make(Cmd::agent_hello, proto::AgentHello{1, 4242, "host-a", {"fn"}, 2, 1000, 3},
                  proto::agent_id(1)),
      h.now);
  (void)h.core.take_outbox();
  h.ready(1, 10);
  h.ready(1, 11);
  h.submit_singles("c1", 0, 5);
  (void)h.take();
  h.now += milliseconds(1500);
  h.core.on_client(bare(Cmd::status, "watcher"), h.now);
  auto out = h.core.take_outbox();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].msg.peer, "watcher");
  const auto r = proto::decode<proto::StatusReport>(out[0].msg);
  ASSERT_EQ(r.workers.size(), 1u);
  EXPECT_EQ(r.workers[0].host, "host-a");
  EXPECT_EQ(r.workers[0].pid, 4242u);
  EXPECT_EQ(r.workers[0].executors, 2u);
  EXPECT_EQ(r.workers[0].busy, 2u);
  EXPECT_EQ(r.workers[0].current_task, "fn");
  EXPECT_DOUBLE_EQ(r.workers[0].current_for_s, 1.5);
  ASSERT_EQ(r.clients.size(), 1u);
  EXPECT_EQ(r.clients[0].name, "c1");
  EXPECT_EQ(r.clients[0].queued + r.clients[0].in_flight, 5u);
  EXPECT_EQ(r.in_flight, 2u);
  EXPECT_EQ(r.queued, 3u);
  EXPECT_EQ(h.core.clients(), 1u) << "asking for status registers no client";
}

}  // namespace
}  // namespace unit_broker
