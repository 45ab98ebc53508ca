// A cluster pool's failure semantics on one host: a standalone broker and worker agents
// (this binary in their roles, main.cpp) over ipc endpoints in a private directory.
// The same cases across real hosts are tests/cluster/ (network namespaces).
#include <mqpool/mqpool.hpp>
#include <zmq.hpp>

#include "common.hpp"
#include "common/fault.hpp"

namespace ftest {
namespace {

using namespace std::chrono_literals;

// A broker on <dir>/front and <dir>/back, and one worker agent of `executors`.
class Cluster {
 public:
  // `executors` 0: no worker yet.
  explicit Cluster(const TempDir& dir, int executors = 1) : dir_(dir) {
    start_broker();
    if (executors > 0) worker_ = start_worker(executors);
  }
  std::string front() const { return "ipc://" + dir_.file("front"); }
  std::string back() const { return "ipc://" + dir_.file("back"); }
  void start_broker() { broker_ = std::make_unique<Scenario>("broker", dir_.path()); }
  std::unique_ptr<Scenario> start_worker(int executors, std::vector<std::string> more = {}) {
    std::vector<std::string> args{"--connect", back(), "--processes", std::to_string(executors)};
    args.insert(args.end(), more.begin(), more.end());
    return std::make_unique<Scenario>("worker", dir_.path(), args);
  }
  // Short heartbeats, so that losses show within a second or so.
  mqpool::PoolOptions options() const {
    return mqpool::PoolOptions{.connect = front(),
                               .heartbeat_interval = 200ms,
                               .heartbeat_liveness = 3,
                               .connect_timeout = kLong};
  }
  Scenario& broker() { return *broker_; }
  Scenario& worker() { return *worker_; }

 private:
  const TempDir& dir_;
  std::unique_ptr<Scenario> broker_;
  std::unique_ptr<Scenario> worker_;
};

// A pool whose tasks may never finish (the failures under test) must not hold ~Pool.
struct TerminateOnExit {
  mqpool::Pool& pool;
  ~TerminateOnExit() { pool.terminate(); }
};

mqpool::AsyncResult<std::int64_t> blocking(mqpool::Pool& pool, const TempDir& dir,
                                           const std::string& name, const std::string& gate) {
  return pool.apply_async(pid_then_wait, dir.file(name), gate, std::int64_t{60000});
}

TEST(Cluster, TheBrokersSigtermFailsOutstandingTasksWithConnectionErrorAtOnce) {
  TempDir dir;
  OpenOnExit gate(dir.file("gate"));
  Cluster c(dir);
  mqpool::Pool pool(c.options());
  TerminateOnExit guard{pool};
  auto r = blocking(pool, dir, "p0", dir.file("gate"));
  ASSERT_TRUE(await_pid_pair(dir.file("p0")));
  c.broker().signal(SIGTERM);
  const auto status = c.broker().wait_for(kPrompt);
  ASSERT_TRUE(status.has_value()) << "the broker did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  try {
    r.get(kPrompt);  // a TimeoutError here means the client was not told
    ADD_FAILURE() << "the task succeeded without a broker";
  } catch (const mqpool::ConnectionError& e) {
    EXPECT_NE(std::string(e.what()).find("shutting down"), std::string::npos) << e.what();
  }
}

// kill -9 of the broker mid-work and a new one on the same endpoints: the client sends
// every unanswered task again, and each caller gets its result once.
TEST(Cluster, ABrokerKilledAndStartedAgainGetsEveryUnansweredTaskAgain) {
  TempDir dir;
  OpenOnExit gate(dir.file("gate"));
  Cluster c(dir, 2);
  mqpool::Pool pool(c.options());
  TerminateOnExit guard{pool};
  std::atomic<int> callbacks{0};
  std::vector<mqpool::AsyncResult<std::int64_t>> rs;
  for (int i = 0; i < 6; ++i)
    rs.push_back(pool.apply_async(
        pid_then_wait,
        std::tuple{dir.file("p" + std::to_string(i)), dir.file("gate"), std::int64_t{60000}},
        mqpool::Callbacks<std::int64_t>{.callback = [&](const std::int64_t&) { ++callbacks; }}));
  ASSERT_TRUE(await_pid_pair(dir.file("p0")));
  ASSERT_TRUE(await_pid_pair(dir.file("p1")));
  c.broker().kill();
  c.start_broker();
  create_file(dir.file("gate"));
  for (auto& r : rs)
    EXPECT_GT(bounded(kLong, "get() after the restart", [&] { return r.get(kLong); }), 0);
  pool.close();
  bounded(kLong, "join()", [&] { pool.join(); });
  EXPECT_EQ(callbacks.load(), 6) << "a result was delivered twice, or not at all";
}

TEST(Cluster, WithNoBrokerBackWithinReconnectTimeoutTasksFailWithConnectionError) {
  TempDir dir;
  OpenOnExit gate(dir.file("gate"));
  Cluster c(dir);
  mqpool::PoolOptions o = c.options();
  o.reconnect_timeout = 1000ms;
  mqpool::Pool pool(o);
  TerminateOnExit guard{pool};
  auto r = blocking(pool, dir, "p0", dir.file("gate"));
  ASSERT_TRUE(await_pid_pair(dir.file("p0")));
  c.broker().kill();
  EXPECT_THROW(r.get(kLong), mqpool::ConnectionError);
  // And while it stays away, new work fails at once instead of waiting for ever.
  EXPECT_THROW(pool.apply_async(pid, std::int64_t{0}).get(kPrompt), mqpool::ConnectionError);
}

TEST(Cluster, AClientOnTheWorkerEndpointIsToldWhereToConnect) {
  TempDir dir;
  Cluster c(dir);
  mqpool::PoolOptions o = c.options();
  o.connect = c.back();
  const auto took = elapsed([&] {
    try {
      mqpool::Pool pool(o);
      ADD_FAILURE() << "a pool connected to the worker endpoint";
    } catch (const mqpool::ConnectionError& e) {
      EXPECT_NE(std::string(e.what()).find("--frontend"), std::string::npos) << e.what();
    }
  });
  EXPECT_LT(took, kPrompt) << "the mix-up was found only by the connect timeout";
}

TEST(Cluster, AWorkerOnTheClientEndpointExitsWithAClearError) {
  TempDir dir;
  Cluster c(dir);
  Scenario wrong("worker", dir.path(), {"--connect", c.front(), "--processes", "1"},
                 dir.file("wrong.err"));
  const auto status = wrong.wait_for(kPrompt);
  ASSERT_TRUE(status.has_value()) << "a worker on the client endpoint kept running";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1);
  const std::string err = read_file(dir.file("wrong.err"));
  EXPECT_NE(err.find("--backend"), std::string::npos) << err;
}

// A client killed with SIGKILL: its queued tasks are dropped and the executor running
// its task is freed at once, not after its tasks would have finished.
TEST(Cluster, AKilledClientsTasksAreDroppedAndItsExecutorFreed) {
  TempDir dir;
  OpenOnExit gate(dir.file("never"));
  Cluster c(dir, 1);
  Scenario doomed("cluster_client", dir.path());
  ASSERT_TRUE(await_file(dir.file("ready"), kLong)) << "the doomed client's task did not start";
  std::istringstream in(read_file(dir.file("ready")));
  pid_t client = 0, executor = 0;
  in >> client >> executor;
  doomed.kill();
  EXPECT_TRUE(eventually([&] { return !process_running(executor); }, kPrompt))
      << "the executor running the dead client's task was not killed";
  mqpool::Pool pool(c.options());
  TerminateOnExit guard{pool};
  const auto took =
      elapsed([&] { EXPECT_NE(pool.apply_async(pid, std::int64_t{0}).get(kPrompt), executor); });
  EXPECT_LT(took, kPrompt);
  EXPECT_FALSE(file_exists(dir.file("dead-1"))) << "a dead client's queued task ran";
}

TEST(Cluster, TasksSubmittedBeforeAnyWorkerJoinsWaitForTheFirst) {
  TempDir dir;
  Cluster c(dir, 0);
  mqpool::Pool pool(c.options());
  TerminateOnExit guard{pool};
  // Longer than the broker's grace for unknown task names (3 s): with no worker at
  // all, the task must wait, not fail.
  auto r = pool.apply_async(pid, std::int64_t{0});
  EXPECT_FALSE(r.wait_for(4s));
  auto late = c.start_worker(1);
  EXPECT_GT(r.get(kLong), 0);
}

// Two clients of one broker: a long map from one does not make the other's apply wait
// for the map to end (each client has its own queue, and turns go by work received).
TEST(Cluster, AnotherClientsLongMapDoesNotHoldUpAnApply) {
  TempDir dir;
  Cluster c(dir, 2);
  mqpool::Pool mapper(c.options());
  mqpool::Pool caller(c.options());
  TerminateOnExit guard{mapper};
  // 2000 naps of 2 ms on 2 executors: about 2 s of work, queued ahead of the apply.
  auto big = mapper.map_async(nap, std::vector<std::int64_t>(2000, 2),
                              mqpool::MapOptions<std::int64_t>{.chunksize = 1});
  ASSERT_FALSE(big.wait_for(50ms));
  EXPECT_EQ(bounded(kLong, "apply()", [&] { return caller.apply(nap, std::int64_t{1}); }), 1);
  EXPECT_FALSE(big.ready()) << "the apply waited for the whole map";
  EXPECT_EQ(big.get(kLong).size(), 2000u);
}

TEST(Cluster, ATaskNoConnectedWorkerKnowsFailsWithUnknownTaskError) {
  TempDir dir;
  Cluster c(dir);
  mqpool::Pool pool(c.options());
  const mqpool::Remote<std::int64_t(std::int64_t)> missing{"failure.no_such_task"};
  try {
    pool.apply_async(missing, std::int64_t{1}).get(kLong);
    ADD_FAILURE() << "an unknown task succeeded";
  } catch (const mqpool::UnknownTaskError& e) {
    EXPECT_NE(std::string(e.what()).find("failure.no_such_task"), std::string::npos) << e.what();
  }
  EXPECT_GT(pool.apply(pid, std::int64_t{0}), 0) << "the pool is still usable";
}

// SIGTERM to a worker agent: the task it runs finishes (within --grace) and its result
// is delivered; it takes nothing new, and exits 0. Work it held but had not started goes
// back to the broker for another worker, without counting a loss.
TEST(Cluster, AWorkersSigtermLetsItsRunningTaskFinishAndHandsBackTheRest) {
  TempDir dir;
  OpenOnExit gates[] = {OpenOnExit(dir.file("g0")), OpenOnExit(dir.file("g1"))};
  Cluster c(dir, 1);
  mqpool::PoolOptions o = c.options();
  o.max_retries = 0;  // a hand-back counted as a loss would fail the second task
  mqpool::Pool pool(o);
  TerminateOnExit guard{pool};
  auto first = blocking(pool, dir, "p0", dir.file("g0"));
  auto second = blocking(pool, dir, "p1", dir.file("g1"));
  const auto running = await_pid_pair(dir.file("p0"));
  ASSERT_TRUE(running);
  c.worker().signal(SIGTERM);
  // The gate opens once the broker knows: else the first task could end, and the next
  // be sent, before the agent has told the broker it is leaving.
  ASSERT_TRUE(eventually(
      [&] {
        const auto s = mqpool::broker_status(c.front(), kPrompt);
        return s.workers.size() == 1 && s.workers[0].draining;
      },
      kPrompt))
      << "the broker never saw the worker draining";
  create_file(dir.file("g0"));
  EXPECT_EQ(first.get(kLong), running->pid);
  const auto status = c.worker().wait_for(kLong);
  ASSERT_TRUE(status.has_value()) << "the worker did not exit after its task";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  EXPECT_FALSE(file_exists(dir.file("p1"))) << "a stopping worker started new work";
  auto other = c.start_worker(1);
  create_file(dir.file("g1"));
  const std::int64_t ran_on = second.get(kLong);
  EXPECT_NE(ran_on, running->pid);
}

// Past --grace the agent kills what still runs, and that work too is handed back.
TEST(Cluster, PastTheGraceAWorkersTaskIsKilledAndRunsElsewhere) {
  TempDir dir;
  OpenOnExit gate(dir.file("gate"));
  Cluster c(dir, 1);
  c.worker().kill();  // replaced by one with a short grace
  auto quick = c.start_worker(1, {"--grace", "300ms"});
  mqpool::PoolOptions o = c.options();
  o.max_retries = 0;
  mqpool::Pool pool(o);
  TerminateOnExit guard{pool};
  auto r = blocking(pool, dir, "p0", dir.file("gate"));
  const auto first = await_pid_pair(dir.file("p0"));
  ASSERT_TRUE(first);
  quick->signal(SIGTERM);
  const auto status = quick->wait_for(kLong);
  ASSERT_TRUE(status.has_value()) << "the worker outlived its grace";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  EXPECT_FALSE(process_running(first->pid));
  auto other = c.start_worker(1);
  create_file(dir.file("gate"));
  EXPECT_NE(r.get(kLong), first->pid) << "the task should have run again, elsewhere";
}

// --- the link thread's faults (issue 11, item 2): see test_thread_faults.cpp ----------

std::atomic<int> g_link_faults{0};
void link_run_fault(std::string_view point) {
  if (point == "link.run" && g_link_faults.fetch_sub(1) > 0)
    throw std::runtime_error("injected fault at link.run");
}
void send_eintr(std::string_view point) {
  if (point == "proto.send" && g_link_faults.fetch_sub(1) > 0) throw zmq::error_t(EINTR);
}
struct HookFor {
  explicit HookFor(mqpool::detail::FaultHook hook) { mqpool::detail::set_fault_hook(hook); }
  ~HookFor() { mqpool::detail::set_fault_hook(nullptr); }
};

TEST(Cluster, AFailedLinkThreadFailsOutstandingTasksWithItsCauseAndTheProcessLives) {
  TempDir dir;
  OpenOnExit gate(dir.file("gate"));
  Cluster c(dir);
  HookFor hook(link_run_fault);
  mqpool::Pool pool(c.options());
  TerminateOnExit guard{pool};
  auto r = blocking(pool, dir, "p0", dir.file("gate"));
  ASSERT_TRUE(await_pid_pair(dir.file("p0")));
  g_link_faults = 1;  // the link thread meets it at its next turn (a heartbeat at most)
  try {
    (void)r.get(kLong);
    ADD_FAILURE() << "the task succeeded";
  } catch (const mqpool::ConnectionError& e) {
    EXPECT_NE(std::string(e.what()).find("injected fault at link.run"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW((void)pool.apply_async(pid, std::int64_t{0}), mqpool::PoolStateError);
  pool.close();
  bounded(kLong, "join", [&] { pool.join(); });
}

TEST(Cluster, AnInterruptedSendIsSentAgain) {
  TempDir dir;
  Cluster c(dir);
  HookFor hook(send_eintr);
  mqpool::Pool pool(c.options());
  g_link_faults = 6;  // each part of the next sends, the SUBMIT's among them
  EXPECT_GT(pool.apply_async(pid, std::int64_t{0}).get(kLong), 0);
  EXPECT_LE(g_link_faults.load(), 0) << "the faults were not injected";
  pool.close();
  bounded(kLong, "join", [&] { pool.join(); });
}

}  // namespace
}  // namespace ftest
