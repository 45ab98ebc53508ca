// PoolOptions rows beyond `processes`: maxtasksperchild, initializer, task_timeout,
// max_retries, and what happens when a worker process dies (SIGKILL, segfault, exit).
#include <signal.h>
#include <string.h>

#include <map>
#include <mqpool/mqpool.hpp>

#include "helpers.hpp"
#include "tasks.hpp"

namespace itest {
namespace {

TEST(Options, MaxTasksPerChildReplacesTheProcess) {
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 1, .maxtasksperchild = 2});
  const auto pids = bounded(
      kLong, "map", [&] { return pool.map(worker_pid, std::vector<std::int64_t>(6, 0), 1); });
  std::map<std::int64_t, int> tasks_per_pid;
  for (auto pid : pids) ++tasks_per_pid[pid];
  EXPECT_EQ(tasks_per_pid.size(), 3u) << "6 tasks, at most 2 per process, 1 process at a time";
  for (const auto& [pid, n] : tasks_per_pid) EXPECT_LE(n, 2) << "process " << pid;
}

TEST(Options, InitializerRunsOnceInEachWorkerBeforeItsFirstTask) {
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 2, .initializer = note_initializer});
  const auto calls = bounded(kLong, "map", [&] {
    return pool.map(initializer_calls, std::vector<std::int64_t>(20, 0), 1);
  });
  for (auto n : calls) EXPECT_EQ(n, 1);
  EXPECT_EQ(initializer_calls(0), 0) << "the initializer ran in the client process";
}

TEST(Options, InitializerRunsInReplacementProcessesToo) {
  mqpool::Pool pool(
      mqpool::PoolOptions{.processes = 1, .maxtasksperchild = 1, .initializer = note_initializer});
  const auto calls = bounded(kLong, "map", [&] {
    return pool.map(initializer_calls, std::vector<std::int64_t>(4, 0), 1);
  });
  EXPECT_EQ(calls, (std::vector<std::int64_t>{1, 1, 1, 1}));
}

TEST(Options, TaskTimeoutKillsTheTaskAndThePoolGoesOn) {
  TempDir dir;
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 1, .task_timeout = 500ms});
  auto r = pool.apply_async(pid_then_wait, dir.file("pid"), dir.file("never"), 60000);
  const auto pid = await_pid_file(dir.file("pid"));
  ASSERT_TRUE(pid.has_value());
  // get()'s own limit is far beyond task_timeout: a TimeoutError well before it comes
  // from the pool.
  const auto t = elapsed([&] { EXPECT_THROW(r.get(kLong), mqpool::TimeoutError); });
  EXPECT_LT(t, std::chrono::milliseconds(15000));
  EXPECT_TRUE(eventually([&] { return !process_running(*pid); }, kPrompt))
      << "the timed-out task's process still runs";
  // A replacement process serves the next task.
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{3}); }), 9);
}

TEST(Options, WorkerKilledMidTaskIsRetriedAndDeliveredOnce) {
  TempDir dir;
  mqpool::Pool pool(2);
  auto r = pool.apply_async(die_once, dir.file("pid"), dir.file("never"), 77);
  const auto pid = await_pid_file(dir.file("pid"));
  ASSERT_TRUE(pid.has_value());
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  EXPECT_EQ(r.get(kLong), 77);  // the retry finds the pid file and returns
  EXPECT_EQ(bounded(kLong, "map",
                    [&] {
                      return pool.map(square, std::vector<std::int64_t>{1, 2});
                    }),
            (std::vector<std::int64_t>{1, 4}));
}

TEST(Options, MaxRetriesBoundsTheAttemptsThenWorkerLostError) {
  TempDir dir;
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 2, .max_retries = 1});
  auto r = pool.apply_async(die, dir.file("log"), std::int64_t{SIGKILL});
  try {
    r.get(kLong);
    FAIL() << "a task that always dies succeeded";
  } catch (const mqpool::WorkerLostError& e) {
    const std::string what = e.what();
    const bool names_signal = what.find("SIGKILL") != std::string::npos ||
                              what.find("signal 9") != std::string::npos ||
                              what.find(::strsignal(SIGKILL)) != std::string::npos;
    EXPECT_TRUE(names_signal) << what;
  }
  EXPECT_EQ(read_lines(dir.file("log")).size(), 2u) << "max_retries = 1: one try and one retry";
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{4}); }), 16);
}

TEST(Options, DefaultMaxRetriesIsTwo) {
  TempDir dir;
  mqpool::Pool pool(2);
  auto r = pool.apply_async(die, dir.file("log"), std::int64_t{SIGSEGV});
  EXPECT_THROW(r.get(kLong), mqpool::WorkerLostError);
  EXPECT_EQ(read_lines(dir.file("log")).size(), 3u);
}

TEST(Options, ExitCodeIsNamedInWorkerLostError) {
  TempDir dir;
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 1, .max_retries = 0});
  auto r = pool.apply_async(die, dir.file("log"), std::int64_t{-42});
  try {
    r.get(kLong);
    FAIL() << "a task that exits succeeded";
  } catch (const mqpool::WorkerLostError& e) {
    EXPECT_NE(std::string(e.what()).find("42"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_lines(dir.file("log")).size(), 1u);
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{5}); }), 25);
}

TEST(Options, NegativeValuesAreRejected) {
  EXPECT_THROW({ mqpool::Pool p(mqpool::PoolOptions{.processes = 1, .maxtasksperchild = -1}); },
               std::invalid_argument);
  // Not in docs/API.md's table, but documented on Pool(PoolOptions) in pool.hpp.
  EXPECT_THROW({ mqpool::Pool p(mqpool::PoolOptions{.processes = 1, .task_timeout = -1ms}); },
               std::invalid_argument);
  EXPECT_THROW({ mqpool::Pool p(mqpool::PoolOptions{.processes = 1, .max_retries = -1}); },
               std::invalid_argument);
  EXPECT_TRUE(children_of_this_process().empty()) << "a rejected pool left a process behind";
}

}  // namespace
}  // namespace itest
