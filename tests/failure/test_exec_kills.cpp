// A killed mqpool.exec task leaves nothing of its command running (docs/API.md §10):
// each executor leads a process group, the command stays in it, and the agent kills the
// whole group when it kills the executor (a time limit, terminate()) or reaps one that
// died by itself. With the agent itself killed, the command dies with its executor
// (PR_SET_PDEATHSIG).
#include <mqpool/mqpool.hpp>
#include <mqpool/worker.hpp>

#include "common.hpp"

namespace ftest {
namespace {

using Argv = std::vector<std::string>;

// A shell that starts a background sleep, writes "<its pid> <the shell's parent>" to
// `file` (the parent is the executor) and waits in a second sleep: a command tree of
// which the background sleep, a grandchild of the executor, is what a kill of the
// executor alone leaves behind.
Argv tree(const std::string& file) {
  return {"sh", "-c", R"(sleep 100 & echo "$! $PPID" > "$1.tmp" && mv "$1.tmp" "$1"; sleep 100)",
          "sh", file};
}

// Ends, at the end of a test, the processes that came to this process (the subreaper)
// because their parents died: what a broken fix leaves running. Declare it before the
// pool, so that the pool's own processes are gone by then.
class EndOrphans {
 public:
  ~EndOrphans() {
    eventually(
        [] {
          const std::vector<pid_t> left = children_of_this_process();
          for (pid_t p : left) {
            ::kill(p, SIGKILL);  // our unreaped child: its pid cannot be another's yet
            ::waitpid(p, nullptr, 0);
          }
          return left.empty();
        },
        kLong);
  }
};

// What every test here stands on: orphans come to this process (the subreaper), and
// those a broken fix leaves running are ended after the test's pool (the members outlive
// the test body's locals); dir_ holds the files the commands write.
class ExecKills : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(reaper_.ok()) << std::strerror(errno); }

  SubreaperScope reaper_;
  EndOrphans end_orphans_;
  TempDir dir_;
};

// The background sleep of tree(`file`), once the task has written it.
pid_t background_of(const std::string& file) {
  const auto p = await_pid_pair(file);
  return p ? p->pid : 0;
}

TEST_F(ExecKills, ACommandPastItsTimeLimitLeavesNothingRunning) {
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 1, .task_timeout = 2s});
  auto r = pool.apply_async(mqpool::exec_task, tree(dir_.file("tree")));
  const pid_t bg = background_of(dir_.file("tree"));
  ASSERT_GT(bg, 0) << "the command did not start in time";
  bounded(kLong, "get() of the timed-out command",
          [&] { EXPECT_THROW(r.get(kLong), mqpool::TimeoutError); });
  EXPECT_TRUE(all_gone_within({bg}, kLong)) << "the background sleep " << bg << " runs on";
}

TEST_F(ExecKills, TerminateLeavesNothingOfARunningCommand) {
  mqpool::Pool pool(1);
  auto r = pool.apply_async(mqpool::exec_task, tree(dir_.file("tree")));
  const pid_t bg = background_of(dir_.file("tree"));
  ASSERT_GT(bg, 0) << "the command did not start in time";
  bounded(kLong, "terminate()", [&] { pool.terminate(); });
  EXPECT_THROW(r.get(kPrompt), mqpool::PoolStateError);
  EXPECT_TRUE(all_gone_within({bg}, kLong)) << "the background sleep " << bg << " runs on";
}

TEST_F(ExecKills, AnExecutorKilledByItselfLeavesNothingOfItsCommand) {
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 1, .max_retries = 0});
  auto r = pool.apply_async(mqpool::exec_task, tree(dir_.file("tree")));
  const auto p = await_pid_pair(dir_.file("tree"));
  ASSERT_TRUE(p.has_value()) << "the command did not start in time";
  const pid_t bg = p->pid, executor = p->ppid;
  ASSERT_EQ(::kill(executor, SIGKILL), 0);  // as the OOM killer would
  bounded(kLong, "get() of the lost command",
          [&] { EXPECT_THROW(r.get(kLong), mqpool::WorkerLostError); });
  EXPECT_TRUE(all_gone_within({bg}, kLong)) << "the background sleep " << bg << " runs on";
}

// No agent is left to kill the group: the executors die by their PDEATHSIG, and the
// command, their child, by its own.
TEST_F(ExecKills, TheCommandDiesWithItsExecutorWhenTheAgentIsKilled) {
  mqpool::Pool pool(1);
  // The shell becomes the sleep (exec): the executor's own child.
  auto r = pool.apply_async(
      mqpool::exec_task,
      Argv{"sh", "-c", R"(echo "$$ $PPID" > "$1.tmp" && mv "$1.tmp" "$1" && exec sleep 100)", "sh",
           dir_.file("child")});
  const auto p = await_pid_pair(dir_.file("child"));
  ASSERT_TRUE(p.has_value()) << "the command did not start in time";
  const auto executor = proc_stat(p->ppid);
  ASSERT_TRUE(executor.has_value());
  const pid_t agent = executor->ppid;
  ASSERT_EQ(proc_stat(agent)->ppid, ::getpid()) << "a local pool's agent is the client's child";
  ASSERT_EQ(::kill(agent, SIGKILL), 0);
  EXPECT_TRUE(all_gone_within({p->pid, p->ppid}, kLong))
      << "the command " << p->pid << " or its executor " << p->ppid << " runs on";
  bounded(kLong, "terminate()", [&] { pool.terminate(); });  // reaps the agent
}

}  // namespace
}  // namespace ftest
