// maxtasksperchild and initializer (issue 3, points 3 and 4; README: "the initializer
// throws", and the note "maxtasksperchild counts chunks").
#include <map>
#include <mqpool/mqpool.hpp>

#include "common.hpp"

namespace ftest {
namespace {

std::vector<std::int64_t> zeros(int n) {
  return std::vector<std::int64_t>(static_cast<std::size_t>(n), 0);
}

TEST(MaxTasksPerChild, OneTaskPerProcessGivesTenDistinctPidsAndEveryResult) {
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 2, .maxtasksperchild = 1});
  const auto pids = bounded(kLong, "map", [&] { return pool.map(pid, zeros(10), 1); });
  ASSERT_EQ(pids.size(), 10u);
  for (auto p : pids) EXPECT_GT(p, 0);
  EXPECT_EQ(std::set<std::int64_t>(pids.begin(), pids.end()).size(), 10u)
      << "a process ran two tasks";
}

// README: maxtasksperchild counts chunks, as Python's does.
TEST(MaxTasksPerChild, CountsChunksNotTasks) {
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 1, .maxtasksperchild = 1});
  const auto pids = bounded(kLong, "map", [&] { return pool.map(pid, zeros(10), 5); });
  ASSERT_EQ(pids.size(), 10u);
  for (int i = 1; i < 5; ++i) EXPECT_EQ(pids[i], pids[0]) << "one chunk, one process";
  for (int i = 6; i < 10; ++i) EXPECT_EQ(pids[i], pids[5]) << "one chunk, one process";
  EXPECT_NE(pids[0], pids[5]) << "the process ran a second chunk";
}

TEST(MaxTasksPerChild, CloseRightAfterMapAsyncDoesNotHang) {
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 2, .maxtasksperchild = 1});
  auto r = pool.map_async(pid, zeros(20), mqpool::MapOptions<std::int64_t>{.chunksize = 1});
  pool.close();
  const auto pids = bounded(kLong, "get() after close()", [&] { return r.get(kLong); });
  EXPECT_EQ(pids.size(), 20u);
  EXPECT_EQ(std::set<std::int64_t>(pids.begin(), pids.end()).size(), 20u);
  bounded(kLong, "join() after close()", [&] { pool.join(); });
}

TEST(Initializer, RunsOnceInEveryExecutorBeforeItsFirstTaskReplacementsToo) {
  TempDir dir;
  const std::string d = dir.path();
  mqpool::Pool pool(mqpool::PoolOptions{
      .processes = 2, .maxtasksperchild = 2, .initializer = [d] { counting_initializer(d); }});
  const auto states = bounded(kLong, "map", [&] { return pool.map(init_state, zeros(12), 1); });
  std::map<std::int64_t, int> runs_per_pid;
  for (const auto& line : read_lines(dir.file("init"))) ++runs_per_pid[std::stoll(line)];
  std::set<std::int64_t> task_pids;
  for (const auto& [p, calls] : states) {
    task_pids.insert(p);
    EXPECT_EQ(calls, 1) << "process " << p << " ran its first task after " << calls
                        << " initializer runs";
    EXPECT_EQ(runs_per_pid[p], 1) << "initializer runs recorded for process " << p;
  }
  EXPECT_EQ(task_pids.size(), 6u) << "12 tasks, 2 per process";
  for (const auto& [p, n] : runs_per_pid) EXPECT_EQ(n, 1) << "process " << p;
  EXPECT_EQ(std::get<1>(init_state(0)), 0) << "the initializer ran in the client";
}

TEST(Initializer, ThatThrowsFailsEveryTaskNamingItsExceptionWithoutARespawnLoop) {
  TempDir dir;
  const std::string d = dir.path();
  mqpool::Pool pool(
      mqpool::PoolOptions{.processes = 2, .initializer = [d] { throwing_initializer(d); }});
  auto expect_initializer_error = [](const mqpool::TaskError& e) {
    EXPECT_NE(std::string(e.what()).find(kInitializerMessage), std::string::npos) << e.what();
    EXPECT_NE(e.remote_message().find(kInitializerMessage), std::string::npos)
        << e.remote_message();
  };
  // Pending tasks (submitted while the executors start) fail, each on its own.
  auto mapped = pool.map_async(pid, zeros(20), mqpool::MapOptions<std::int64_t>{.chunksize = 1});
  std::vector<mqpool::AsyncResult<std::int64_t>> applied;
  for (int i = 0; i < 6; ++i) applied.push_back(pool.apply_async(pid, std::int64_t{i}));
  const auto t = elapsed([&] {
    bounded(kLong, "map_async get()", [&] {
      try {
        mapped.get(kLong);
        ADD_FAILURE() << "tasks succeeded although the initializer threw";
      } catch (const mqpool::TaskError& e) {
        expect_initializer_error(e);
      }
    });
    for (auto& r : applied) {
      bounded(kLong, "apply_async get()", [&] {
        try {
          r.get(kLong);
          ADD_FAILURE() << "a task succeeded although the initializer threw";
        } catch (const mqpool::TaskError& e) {
          expect_initializer_error(e);
        }
      });
    }
  });
  EXPECT_LT(t, kPrompt) << "the failures were not prompt";

  // Later tasks fail the same way.
  bounded(kLong, "later apply", [&] {
    try {
      pool.apply(pid, std::int64_t{0});
      ADD_FAILURE() << "a later task succeeded although the initializer threw";
    } catch (const mqpool::TaskError& e) {
      expect_initializer_error(e);
    }
  });
  bounded(kLong, "later map", [&] {
    try {
      pool.map(pid, zeros(50), 1);
      ADD_FAILURE() << "a later map succeeded although the initializer threw";
    } catch (const mqpool::TaskError& e) {
      expect_initializer_error(e);
    }
  });

  // No respawn loop: the initializer ran once in each of the two executors, and those
  // two are still the agent's only children.
  const auto lines = read_lines(dir.file("init"));
  const std::set<std::string> init_pids(lines.begin(), lines.end());
  EXPECT_EQ(lines.size(), 2u) << "initializer runs: a respawn loop?";
  ASSERT_EQ(init_pids.size(), 2u);
  const pid_t executor = static_cast<pid_t>(std::stol(*init_pids.begin()));
  const auto stat = proc_stat(executor);
  ASSERT_TRUE(stat.has_value()) << "the executor whose initializer threw has gone: replaced?";
  std::set<std::string> children;
  for (pid_t c : live_children_of(stat->ppid)) children.insert(std::to_string(c));
  EXPECT_EQ(children, init_pids) << "the agent's executors changed";
}

}  // namespace
}  // namespace ftest
