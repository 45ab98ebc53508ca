// Heartbeats (issue 3, point 5; README: "a worker process stops answering"): an
// executor silent for heartbeat_interval x heartbeat_liveness (here SIGSTOPped) is
// declared lost, killed, and its task retried elsewhere.
#include <mqpool/mqpool.hpp>

#include "common.hpp"

namespace ftest {
namespace {

mqpool::PoolOptions fast_heartbeats() {
  return mqpool::PoolOptions{.processes = 2, .heartbeat_interval = 200ms, .heartbeat_liveness = 3};
}

TEST(Heartbeat, AStoppedExecutorIsDeclaredLostAndItsTaskSucceedsElsewhere) {
  TempDir dir;
  mqpool::Pool pool(fast_heartbeats());
  const std::string d = subdir(dir, "stop-once");
  const auto t = elapsed([&] {
    EXPECT_EQ(bounded(kLong, "apply",
                      [&] {
                        return pool.apply(fated, Fate{d, 1, kSigstop, 5});
                      }),
              5);
  });
  // Silent for the whole window: at least 600 ms after its last heartbeat, which came
  // at most 200 ms before it stopped.
  EXPECT_GE(t, 400ms) << "declared lost before its liveness window passed";
  EXPECT_LT(t, 10s) << "the liveness window is 600 ms";
  ASSERT_EQ(tries(d), 2);
  const pid_t stopped = try_pid(d, 1);
  EXPECT_NE(try_pid(d, 2), stopped);
  EXPECT_TRUE(eventually([&] { return !process_exists(stopped); }, kPrompt))
      << "the stopped executor " << stopped << " remains";
  expect_pool_size(pool, 2, dir, "size");
}

TEST(Heartbeat, AnExecutorThatAlwaysStopsFailsWithWorkerLostError) {
  TempDir dir;
  mqpool::Pool pool(fast_heartbeats());
  const std::string d = subdir(dir, "stop-always");
  bounded(kLong, "apply", [&] {
    try {
      pool.apply(fated, Fate{d, 1000, kSigstop, 5});
      ADD_FAILURE() << "a task that always stops its process succeeded";
    } catch (const mqpool::WorkerLostError& e) {
      EXPECT_NE(std::string(e.what()).find("stopped answering"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("heartbeat"), std::string::npos) << e.what();
    }
  });
  ASSERT_EQ(tries(d), 3) << "max_retries = 2";
  for (int n = 1; n <= 3; ++n) {
    const pid_t stopped = try_pid(d, n);
    EXPECT_TRUE(eventually([&] { return !process_exists(stopped); }, kPrompt))
        << "stopped executor " << stopped << " (try " << n << ") remains";
  }
  expect_pool_size(pool, 2, dir, "size");
}

// The other side: a task that runs for many liveness windows is not "lost", because
// its executor's heartbeat thread keeps answering.
TEST(Heartbeat, ALongTaskIsNotMistakenForAStoppedOne) {
  TempDir dir;
  mqpool::Pool pool(fast_heartbeats());
  const std::string d = subdir(dir, "long");
  const auto p = bounded(kLong, "apply", [&] { return pool.apply(stuck, d, std::int64_t{3000}); });
  EXPECT_EQ(tries(d), 1) << "a busy executor was declared lost";
  EXPECT_EQ(p, try_pid(d, 1));
}

}  // namespace
}  // namespace ftest
