// A broker that restarts (docs/PROTOCOL.md, heartbeats: "an executor that stops hearing the
// broker registers again") gets its executors back: the agent's executors notice that
// their heartbeats go unanswered and announce themselves to whichever broker now
// listens, so a client's next task runs without restarting any worker.
#include <mqpool/mqpool.hpp>

#include "common.hpp"

namespace ftest {
namespace {

TEST(BrokerRestart, ExecutorsRegisterAgainWithTheNewBroker) {
  TempDir dir;
  auto broker = std::make_unique<Scenario>("broker", dir.path());
  ASSERT_GT(broker->pid(), 0);
  Scenario worker("worker", dir.path(),
                  {"--connect", "ipc://" + dir.file("back"), "--processes", "1"});
  ASSERT_GT(worker.pid(), 0);

  mqpool::Pool pool(mqpool::PoolOptions{.connect = "ipc://" + dir.file("front")});
  // A task that never runs (the failure this test looks for) must fail the test, not
  // hold ~Pool (close + join) for ever.
  struct TerminateOnExit {
    mqpool::Pool& pool;
    ~TerminateOnExit() { pool.terminate(); }
  } guard{pool};
  const std::int64_t executor = pool.apply_async(pid, std::int64_t{0}).get(kLong);
  ASSERT_GT(executor, 0);

  broker->kill();  // SIGKILL: it says goodbye to nobody, and its state is gone
  broker = std::make_unique<Scenario>("broker", dir.path());
  ASSERT_GT(broker->pid(), 0);

  // The new broker knows no executor until one registers again: without that, this
  // task would wait in its queue until the deadline.
  EXPECT_EQ(pool.apply_async(pid, std::int64_t{0}).get(kLong), executor)
      << "the task ran on another process: the executor was replaced, not found again";
  EXPECT_TRUE(process_running(static_cast<pid_t>(executor)));
}

}  // namespace
}  // namespace ftest
