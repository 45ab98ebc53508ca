// Executor death (issue 3, point 1; README: "a worker process dies"): the task is
// retried elsewhere (a retried chunk split into single tasks), then fails with
// WorkerLostError naming the signal or exit code after max_retries; the pool keeps
// its size. And PoolOptions::max_retries bounds the dispatches exactly.
#include <signal.h>

#include <map>
#include <mqpool/mqpool.hpp>

#include "common.hpp"

namespace ftest {
namespace {

// What WorkerLostError::what() must name for each way of dying.
const std::map<std::int64_t, std::string> kCause = {
    {kSigkill, "killed by signal 9 (SIGKILL)"},
    {kSigsegv, "killed by signal 11 (SIGSEGV)"},
    {kExit3, "exited with code 3"},
    {kUnderscore3, "exited with code 3"},
    {kAbort, "killed by signal 6 (SIGABRT)"},
};

// The broker bundles tasks whose measured cost is small; a map of many quick
// "failure.fated" tasks teaches it that cost, as any long-running program would.
void learn_that_fated_is_cheap(mqpool::Pool& pool) {
  std::vector<Fate> warm;
  for (int i = 0; i < 2000; ++i) warm.push_back(Fate{"", 0, kSigkill, i});
  ASSERT_EQ(bounded(kLong, "warm-up map", [&] { return pool.map(fated, warm, 100); }).size(),
            2000u);
}

// Heartbeats so slow (a 30 s liveness window) that only the agent's report of the
// exit can explain a prompt retry.
mqpool::PoolOptions slow_heartbeats(int max_retries = 2) {
  return mqpool::PoolOptions{.processes = 2,
                             .max_retries = max_retries,
                             .heartbeat_interval = 10s,
                             .heartbeat_liveness = 3};
}

TEST(Death, TaskThatKillsItselfOnItsFirstTryOnlySucceedsOnTheRetry) {
  TempDir dir;
  mqpool::Pool pool(slow_heartbeats());
  const std::string d = subdir(dir, "once");
  std::int64_t v = 0;
  const auto t = elapsed([&] {
    v = bounded(kLong, "apply", [&] { return pool.apply(fated, Fate{d, 1, kSigkill, 41}); });
  });
  EXPECT_EQ(v, 41);
  EXPECT_LT(t, kPrompt)
      << "the retry waited for heartbeat expiry: the agent did not report the exit";
  EXPECT_EQ(tries(d), 2) << "one death, one successful retry";
  const pid_t first = try_pid(d, 1), second = try_pid(d, 2);
  EXPECT_NE(first, second) << "the retry ran in the process that was killed?";
  EXPECT_TRUE(eventually([&] { return !process_exists(first); }, kPrompt))
      << "the killed executor " << first << " was not reaped";
}

TEST(Death, AChunkWithATaskThatDiesOnceStillDeliversEveryResult) {
  TempDir dir;
  mqpool::Pool pool(2);
  std::vector<Fate> in;
  for (int i = 0; i < 16; ++i) in.push_back(Fate{"", 0, kSigkill, i * 10});
  const std::string d = subdir(dir, "mid");
  in[6] = Fate{d, 1, kSigkill, 60};  // in the chunk [4, 8) with chunksize 4
  const auto out = bounded(kLong, "map", [&] { return pool.map(fated, in, 4); });
  ASSERT_EQ(out.size(), 16u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(out[i], i * 10) << "index " << i;
  EXPECT_EQ(tries(d), 2);
}

// max_retries = 2: three counted deaths, then the error. A death inside a TASK bundle of
// several chunks names no culprit and is not counted (broker/src/core.cpp, drop_executor), so
// a task the broker bundled with others may run once more; never fewer than three times.
void expect_counted_tries(int runs) {
  EXPECT_GE(runs, 3) << "failed before three counted tries";
  EXPECT_LE(runs, 4) << "more than one uncounted try";
}

// Tasks that always die, by each cause, amid tasks that succeed, chunksize 3: every
// chunk holds one task that dies and neighbours that must survive (the retried chunk is
// split into single tasks). imap shows each position's own outcome. The pool first
// learns that the task is cheap (see learn_that_fated_is_cheap).
TEST(Death, TasksThatAlwaysDieFailNamingTheCauseWhileTheirNeighboursSucceed) {
  TempDir dir;
  mqpool::Pool pool(2);
  learn_that_fated_is_cheap(pool);
  const std::map<int, std::int64_t> dying = {
      {2, kSigkill}, {4, kSigsegv}, {7, kExit3}, {9, kUnderscore3}, {12, kAbort}};
  auto inputs = [&](const std::string& tag) {
    std::vector<Fate> in;
    for (int i = 0; i < 15; ++i) {
      if (auto it = dying.find(i); it != dying.end())
        in.push_back(Fate{subdir(dir, tag + std::to_string(i)), 1000, it->second, -1});
      else
        in.push_back(Fate{"", 0, kSigkill, 100 + i});
    }
    return in;
  };

  const auto in = inputs("imap-");
  bounded(kLong * 2, "imap over dying tasks", [&] {
    auto stream = pool.imap(fated, in, 3);
    for (int i = 0; i < 15; ++i) {
      SCOPED_TRACE("position " + std::to_string(i));
      if (auto it = dying.find(i); it != dying.end()) {
        try {
          auto v = stream.next(kLong);
          ADD_FAILURE() << "a task that always dies gave " << (v ? std::to_string(*v) : "the end");
        } catch (const mqpool::WorkerLostError& e) {
          EXPECT_NE(std::string(e.what()).find(kCause.at(it->second)), std::string::npos)
              << e.what();
          expect_counted_tries(tries(in[i].dir));
        }
      } else {
        try {
          EXPECT_EQ(stream.next(kLong), std::optional<std::int64_t>(100 + i));
        } catch (const mqpool::Error& e) {
          ADD_FAILURE() << "a task that does not die failed: " << e.what();
        }
      }
    }
    EXPECT_EQ(stream.next(kLong), std::nullopt);
  });

  // map over the same kind of input: it waits for every task, then raises the
  // lowest-index failure, the SIGKILL at index 2.
  const auto in2 = inputs("map-");
  bounded(kLong * 2, "map over dying tasks", [&] {
    try {
      pool.map(fated, in2, 3);
      ADD_FAILURE() << "map over tasks that always die succeeded";
    } catch (const mqpool::WorkerLostError& e) {
      EXPECT_NE(std::string(e.what()).find("SIGKILL"), std::string::npos) << e.what();
    }
  });
  for (const auto& [i, how] : dying) {
    SCOPED_TRACE("index " + std::to_string(i));
    expect_counted_tries(tries(in2[i].dir));
  }

  // The agent replaced every executor that died: the pool has its two.
  expect_pool_size(pool, 2, dir, "size");
  // And it still works.
  std::vector<Fate> good;
  for (int i = 0; i < 20; ++i) good.push_back(Fate{"", 0, kSigkill, i});
  const auto out = bounded(kLong, "map after deaths", [&] { return pool.map(fated, good); });
  for (int i = 0; i < 20; ++i) EXPECT_EQ(out[i], i);
}

// Sixteen cheap tasks through imap with `chunksize`, on a pool that has learnt they are
// cheap; the fourth always kills its worker. Checks that only it fails, with
// WorkerLostError, and returns how many times it was dispatched.
int tries_of_a_poisonous_task_among_fifteen(int chunksize) {
  TempDir dir;
  mqpool::Pool pool(2);
  learn_that_fated_is_cheap(pool);

  std::vector<Fate> in;
  for (int i = 0; i < 16; ++i) in.push_back(Fate{"", 0, kSigkill, 100 + i});
  const std::string poison = subdir(dir, "poison");
  in[3] = Fate{poison, 1000, kSigkill, -1};
  bounded(kLong, "imap", [&] {
    auto stream = pool.imap(fated, in, chunksize);
    for (int i = 0; i < 16; ++i) {
      SCOPED_TRACE("position " + std::to_string(i));
      try {
        const auto v = stream.next(kLong);
        if (i == 3)
          ADD_FAILURE() << "the task that always dies succeeded";
        else
          EXPECT_EQ(v, std::optional<std::int64_t>(100 + i));
      } catch (const mqpool::WorkerLostError& e) {
        if (i != 3) ADD_FAILURE() << "a neighbour of the poisonous task failed: " << e.what();
      }
    }
  });
  return tries(poison);
}

// issue 3: "A retried chunk is split into single tasks so that one poisonous input
// cannot take its neighbours down with it." One chunk of eight holds a task that always
// dies; its seven neighbours must succeed and the poisonous task must fail after its
// own three tries.
TEST(Death, RetriedChunkIsSplitSoOnePoisonousInputDoesNotTakeItsNeighboursDown) {
  EXPECT_EQ(tries_of_a_poisonous_task_among_fifteen(8), 3)
      << "the poisonous task's own dispatches (max_retries = 2)";
}

// The same with chunksize 1, where the session batches the cheap single tasks into one
// coalesced chunk: the death inside the batch names no task (any of the sixteen could be
// it), the batch is split into singles that travel alone, and the poisonous task then
// dies its own three counted times (max_retries = 2) while its neighbours succeed.
TEST(Death, ABatchOfSingleTasksWithAPoisonousOneIsSplitAndOnlyThatOneFails) {
  EXPECT_EQ(tries_of_a_poisonous_task_among_fifteen(1), 4)
      << "one death in the batch, which names no task, then its own three (max_retries = 2)";
}

TEST(MaxRetries, ZeroFailsADyingTaskAtOnce) {
  TempDir dir;
  mqpool::Pool pool(slow_heartbeats(0));
  const std::string d = subdir(dir, "zero");
  const auto t = elapsed([&] {
    bounded(kLong, "apply", [&] {
      try {
        pool.apply(fated, Fate{d, 1, kSigkill, 1});
        ADD_FAILURE() << "a task that died succeeded with max_retries = 0";
      } catch (const mqpool::WorkerLostError& e) {
        EXPECT_NE(std::string(e.what()).find("SIGKILL"), std::string::npos) << e.what();
      }
    });
  });
  EXPECT_EQ(tries(d), 1) << "max_retries = 0: never dispatched again";
  EXPECT_LT(t, kPrompt);
  // The pool goes on, with its size.
  expect_pool_size(pool, 2, dir, "size");
}

TEST(MaxRetries, TwoRetriesRescueATaskThatDiesTwice) {
  TempDir dir;
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 2, .max_retries = 2});
  const std::string d = subdir(dir, "twice");
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(fated, Fate{d, 2, kSigkill, 7}); }), 7);
  EXPECT_EQ(tries(d), 3);
}

TEST(MaxRetries, OneRetryDoesNotRescueATaskThatDiesTwice) {
  TempDir dir;
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 2, .max_retries = 1});
  const std::string d = subdir(dir, "twice");
  bounded(kLong, "apply", [&] {
    try {
      pool.apply(fated, Fate{d, 2, kSigsegv, 7});
      ADD_FAILURE() << "a task that died twice succeeded with max_retries = 1";
    } catch (const mqpool::WorkerLostError& e) {
      EXPECT_NE(std::string(e.what()).find("SIGSEGV"), std::string::npos) << e.what();
    }
  });
  EXPECT_EQ(tries(d), 2);
}

}  // namespace
}  // namespace ftest
