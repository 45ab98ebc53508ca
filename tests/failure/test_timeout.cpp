// task_timeout (issue 3, point 2; README: "a task runs too long"): the process running
// the task is killed and replaced, the task fails with TimeoutError (no retry), the
// next task runs. README note: the time limit makes every task its own chunk.
#include <mqpool/mqpool.hpp>

#include "common.hpp"

namespace ftest {
namespace {

TEST(TaskTimeout, AMinuteLongTaskFailsPromptlyAndTheNextTaskRunsOnAOneProcessPool) {
  TempDir dir;
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 1, .task_timeout = 500ms});
  const std::string d = subdir(dir, "stuck");
  const auto t0 = Clock::now();
  auto r = pool.apply_async(stuck, d, std::int64_t{60000});
  bounded(30s, "get() of the stuck task", [&] {
    try {
      r.get(60s);  // get()'s own limit is beyond the bound: a TimeoutError comes from the pool
      ADD_FAILURE() << "a task that sleeps a minute beat a 500 ms limit";
    } catch (const mqpool::TimeoutError& e) {
      EXPECT_NE(std::string(e.what()).find("500 ms"), std::string::npos) << e.what();
    }
  });
  const auto t = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  EXPECT_GE(t, 500ms) << "failed before its limit";
  EXPECT_LT(t, 20s);
  ASSERT_EQ(tries(d), 1);
  const pid_t stuck_pid = try_pid(d, 1);
  ASSERT_GT(stuck_pid, 0);

  // One process: the next task can run only if the stuck one really stopped.
  const auto next = bounded(30s, "the next task", [&] { return pool.apply(pid, std::int64_t{0}); });
  EXPECT_NE(next, stuck_pid) << "the next task ran in the process that timed out";
  EXPECT_TRUE(eventually([&] { return !process_exists(stuck_pid); }, kPrompt))
      << "the timed-out executor " << stuck_pid << " still exists";
  EXPECT_EQ(tries(d), 1) << "a timed-out task is not retried";
  // The pool keeps its one process and goes on.
  expect_pool_size(pool, 1, dir, "size");
}

// The broker's thread keeps a task's time limit even when nothing else would wake it:
// heartbeats are 20 s apart here, and the submitting thread may dispatch the task itself
// (Loop::dispatch_on_submitter), so only the broker's own deadline can end it in time.
TEST(TaskTimeout, TheLimitHoldsWhenNoOtherEventWakesTheBroker) {
  TempDir dir;
  mqpool::Pool pool(
      mqpool::PoolOptions{.processes = 1, .task_timeout = 300ms, .heartbeat_interval = 20s});
  const std::string d = subdir(dir, "stuck");
  // A few round trips first, so that the executor's start-up messages (READY, its first
  // heartbeat) are behind us and the broker's thread is asleep when the task comes.
  for (int i = 0; i < 5; ++i)
    ASSERT_GT(bounded(kLong, "a quick task", [&] { return pool.apply(pid, std::int64_t{0}); }), 0);
  auto r = pool.apply_async(stuck, d, std::int64_t{60000});
  try {
    r.get(10s);  // well inside the first heartbeat: only the time limit can answer
    ADD_FAILURE() << "a task that sleeps a minute beat a 300 ms limit";
  } catch (const mqpool::TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("time limit of 300 ms"), std::string::npos)
        << "not the pool's time limit: " << e.what();
  }
}

// chunksize 4 would put the slow task with three fast ones; under task_timeout every
// task travels alone, so only the slow one fails.
TEST(TaskTimeout, EveryTaskIsItsOwnChunkSoOnlyTheSlowOneFails) {
  TempDir dir;
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 2, .task_timeout = 1000ms});
  std::vector<Step> in;
  for (int i = 0; i < 8; ++i) in.push_back(Step{dir.path(), i, i == 1 ? 60000 : 0});
  bounded(kLong, "imap", [&] {
    auto stream = pool.imap(step, in, 4);
    for (int i = 0; i < 8; ++i) {
      SCOPED_TRACE("position " + std::to_string(i));
      if (i == 1)
        EXPECT_THROW(stream.next(kLong), mqpool::TimeoutError);
      else
        EXPECT_EQ(stream.next(kLong), std::optional<std::int64_t>(i));
    }
    EXPECT_EQ(stream.next(kLong), std::nullopt);
  });
  // map raises the only failure, TimeoutError, after the others finished.
  for (auto& s : in) s.dir = subdir(dir, "map");
  bounded(kLong, "map", [&] { EXPECT_THROW(pool.map(step, in, 4), mqpool::TimeoutError); });
  for (int i = 0; i < 8; ++i)
    EXPECT_TRUE(file_exists(in[0].dir + "/done-" + std::to_string(i)))
        << "task " << i << " never ran";
}

}  // namespace
}  // namespace ftest
