// terminate() and orphans (issue 3, points 6 and 7; README: "terminate()" and "the
// client process is killed"): terminate kills the executors at once; no process of a
// pool remains after the client dies by SIGKILL, nor after the Pool is destroyed
// normally, after terminate, or after executors crashed.
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mqpool/mqpool.hpp>

#include "common.hpp"

namespace ftest {
namespace {

// Every pid in `pids` has no /proc entry (exited and reaped).
void expect_all_gone(const std::set<pid_t>& pids, const std::string& what) {
  for (pid_t p : pids) {
    const auto s = proc_stat(p);
    EXPECT_FALSE(s.has_value()) << what << ": process " << p << " remains (state "
                                << (s ? s->state : '?') << ", parent " << (s ? s->ppid : 0) << ")";
  }
}

TEST(Terminate, KillsTheExecutorsAtOnceAndFailsUnfinishedResults) {
  TempDir dir;
  std::set<pid_t> procs;
  {
    mqpool::Pool pool(2);
    OpenOnExit gate(dir.file("gate"));  // only if an assertion leaves early
    std::vector<mqpool::AsyncResult<std::int64_t>> results;
    for (int i = 0; i < 5; ++i)  // two run, three wait in the queue
      results.push_back(pool.apply_async(pid_then_wait, dir.file("pid-" + std::to_string(i)),
                                         dir.file("gate"), std::int64_t{60000}));
    for (int i = 0; i < 2; ++i) {
      const auto p = await_pid_pair(dir.file("pid-" + std::to_string(i)));
      ASSERT_TRUE(p.has_value()) << "task " << i << " did not start";
      procs.insert(p->pid);
      procs.insert(p->ppid);
    }
    ASSERT_EQ(procs.size(), 3u) << "two executors and their agent";
    const auto t = elapsed([&] {
      bounded(kLong, "terminate() + join()", [&] {
        pool.terminate();
        pool.join();
      });
    });
    EXPECT_LT(t, kPrompt) << "terminate() + join() waited for the tasks";
    for (auto& r : results) {
      EXPECT_TRUE(r.ready()) << "an unfinished result is still pending after terminate()";
      bounded(kPrompt, "get() after terminate()",
              [&] { EXPECT_THROW(r.get(kPrompt), mqpool::PoolStateError); });
    }
    // join() returned: the agent was reaped, and it reaped its executors first.
    expect_all_gone(procs, "after terminate() + join()");
  }
  expect_all_gone(procs, "after the pool's destructor");
}

TEST(NoOrphans, AClientKilledBySigkillLeavesNothingBehind) {
  TempDir dir;
  SubreaperScope reaper;
  ASSERT_TRUE(reaper.ok()) << std::strerror(errno);
  Scenario client_process("orphan_client", dir.path());  // main.cpp's scenario
  const pid_t client = client_process.pid();
  ASSERT_GT(client, 0);

  const auto ready = await_pid_pair(dir.file("ready"));  // reads "<client> <agent>"
  ASSERT_TRUE(ready.has_value()) << "the client did not start its tasks in time";
  std::istringstream in(read_file(dir.file("ready")));
  pid_t c = 0, agent = 0, e0 = 0, e1 = 0;
  in >> c >> agent >> e0 >> e1;
  ASSERT_EQ(c, client);
  const std::set<pid_t> pool_procs{agent, e0, e1};
  ASSERT_EQ(pool_procs.size(), 3u);
  for (pid_t p : pool_procs) ASSERT_TRUE(process_running(p)) << p;
  ASSERT_EQ(proc_stat(agent)->ppid, client);
  ASSERT_EQ(proc_stat(e0)->ppid, agent);
  ASSERT_EQ(proc_stat(e1)->ppid, agent);

  const int status = client_process.kill();
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "client status " << status;

  // Within the deadline every process of the pool has exited; orphans come to this
  // process (the subreaper) and are reaped here, so none may have a /proc entry left.
  EXPECT_TRUE(all_gone_within(pool_procs, 10s));
  expect_all_gone(pool_procs, "after the client was SIGKILLed");
  // Nor its socket folder (mqpool-XXXXXX, under the TMPDIR the scenario set).
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("tmp")))
    left.push_back(e.path().string());
  EXPECT_TRUE(left.empty()) << "left behind: " << left.front();
}

// README: "executors die with their agent (PR_SET_PDEATHSIG)". The agent is killed
// by SIGKILL, so it cannot kill them itself.
TEST(NoOrphans, ExecutorsDieWithTheirAgent) {
  TempDir dir;
  SubreaperScope reaper;  // orphaned executors come here, to be reaped and not linger as zombies
  ASSERT_TRUE(reaper.ok()) << std::strerror(errno);
  mqpool::Pool pool(2);
  OpenOnExit gate(dir.file("gate"));
  std::vector<mqpool::AsyncResult<std::int64_t>> results;
  for (int i = 0; i < 2; ++i)
    results.push_back(pool.apply_async(pid_then_wait, dir.file("pid-" + std::to_string(i)),
                                       dir.file("gate"), std::int64_t{60000}));
  std::set<pid_t> executors;
  pid_t agent = 0;
  for (int i = 0; i < 2; ++i) {
    const auto p = await_pid_pair(dir.file("pid-" + std::to_string(i)));
    ASSERT_TRUE(p.has_value());
    executors.insert(p->pid);
    agent = p->ppid;
  }
  ASSERT_EQ(executors.size(), 2u);
  ASSERT_EQ(proc_stat(agent)->ppid, ::getpid()) << "a local pool's agent is the client's child";
  ASSERT_EQ(::kill(agent, SIGKILL), 0);
  EXPECT_TRUE(all_gone_within(executors, 10s));
  expect_all_gone(executors, "after their agent was SIGKILLed");
  // The agent is this process's child: terminate() reaps it.
  bounded(kLong, "terminate()", [&] { pool.terminate(); });
  EXPECT_FALSE(process_exists(agent));
}

TEST(NoOrphans, NothingRemainsAfterANormalDestruction) {
  TempDir dir;
  std::set<pid_t> procs;
  {
    mqpool::Pool pool(2);
    for (const auto& p : busy_executors(pool, 2, dir, "busy")) {
      procs.insert(p.pid);
      procs.insert(p.ppid);
    }
    ASSERT_EQ(procs.size(), 3u);
    for (pid_t p : procs) ASSERT_TRUE(process_running(p));
  }
  expect_all_gone(procs, "after ~Pool()");
  EXPECT_TRUE(children_of_this_process().empty()) << "a child of the client remains";
}

TEST(NoOrphans, NothingRemainsAfterTerminate) {
  TempDir dir;
  std::set<pid_t> procs;
  {
    mqpool::Pool pool(2);
    OpenOnExit gate(dir.file("gate"));
    std::vector<mqpool::AsyncResult<std::int64_t>> results;
    for (int i = 0; i < 2; ++i)
      results.push_back(pool.apply_async(pid_then_wait, dir.file("pid-" + std::to_string(i)),
                                         dir.file("gate"), std::int64_t{60000}));
    for (int i = 0; i < 2; ++i) {
      const auto p = await_pid_pair(dir.file("pid-" + std::to_string(i)));
      ASSERT_TRUE(p.has_value());
      procs.insert(p->pid);
      procs.insert(p->ppid);
    }
    ASSERT_EQ(procs.size(), 3u);
    bounded(kPrompt, "terminate()", [&] { pool.terminate(); });
    // No join(): the destructor after terminate().
  }
  expect_all_gone(procs, "after terminate() and ~Pool()");
  EXPECT_TRUE(children_of_this_process().empty()) << "a child of the client remains";
}

TEST(NoOrphans, NothingRemainsAfterExecutorsCrashed) {
  TempDir dir;
  std::set<pid_t> procs;
  {
    mqpool::Pool pool(mqpool::PoolOptions{.processes = 2, .max_retries = 0});
    std::vector<std::string> dirs;
    std::vector<mqpool::AsyncResult<std::int64_t>> crashes;
    for (int i = 0; i < 4; ++i) {
      dirs.push_back(subdir(dir, "crash-" + std::to_string(i)));
      crashes.push_back(
          pool.apply_async(fated, Fate{dirs.back(), 1, i % 2 ? kSigsegv : kSigkill, 0}));
    }
    for (auto& r : crashes)
      bounded(kLong, "a crashing task",
              [&] { EXPECT_THROW(r.get(kLong), mqpool::WorkerLostError); });
    for (const auto& d : dirs) procs.insert(try_pid(d, 1));
    for (const auto& p : busy_executors(pool, 2, dir, "busy")) {
      procs.insert(p.pid);
      procs.insert(p.ppid);
    }
    ASSERT_EQ(procs.size(), 7u) << "four crashed executors, two replacements, one agent";
  }
  expect_all_gone(procs, "after executors crashed and ~Pool()");
  EXPECT_TRUE(children_of_this_process().empty()) << "a child of the client remains";
}

}  // namespace
}  // namespace ftest
