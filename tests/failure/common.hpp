// Small pieces shared by the failure tests.
#pragma once

#include <mqpool/mqpool.hpp>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "tasks.hpp"

namespace ftest {

// A fresh subdirectory `name` of `dir` (for one task's tries).
inline std::string subdir(const TempDir& dir, const std::string& name) {
  const std::string path = dir.file(name);
  std::filesystem::create_directories(path);
  return path;
}

// Runs `n` tasks that each wait at a gate, and returns their (pid, ppid) once all `n`
// run at the same time. An executor runs one task at a time, so this completes only if
// the pool has at least `n` live executors: it is how the tests see the pool's size.
// Fails the test (and returns what it saw) if they do not all start within kLong.
inline std::vector<PidPair> busy_executors(mqpool::Pool& pool, int n, const TempDir& dir,
                                           const std::string& tag) {
  const std::string gate = dir.file(tag + "-gate");
  OpenOnExit open_gate(gate);  // the tasks end even if an assertion leaves early
  std::vector<mqpool::AsyncResult<std::int64_t>> results;
  for (int i = 0; i < n; ++i)
    results.push_back(pool.apply_async(pid_then_wait, dir.file(tag + "-pid-" + std::to_string(i)),
                                       gate, std::int64_t{60000}));
  std::vector<PidPair> out;
  for (int i = 0; i < n; ++i) {
    auto p = await_pid_pair(dir.file(tag + "-pid-" + std::to_string(i)));
    if (!p) {
      ADD_FAILURE() << "only " << i << " of " << n << " gate tasks started: fewer executors than "
                    << n << "?";
      return out;
    }
    out.push_back(*p);
  }
  create_file(gate);
  for (int i = 0; i < n; ++i) {
    const auto pid = bounded(kLong, "gate task get()", [&] { return results[i].get(kLong); });
    EXPECT_EQ(pid, out[i].pid);
  }
  return out;
}

// Asserts that `pool` has exactly `n` executors now: n gate tasks run at once in n
// distinct processes of one agent, and that agent has exactly n live children.
inline void expect_pool_size(mqpool::Pool& pool, int n, const TempDir& dir,
                             const std::string& tag) {
  const auto busy = busy_executors(pool, n, dir, tag);
  ASSERT_EQ(busy.size(), static_cast<std::size_t>(n));
  std::set<pid_t> pids, agents;
  for (const auto& p : busy) {
    pids.insert(p.pid);
    agents.insert(p.ppid);
  }
  EXPECT_EQ(pids.size(), static_cast<std::size_t>(n)) << "gate tasks shared a process";
  ASSERT_EQ(agents.size(), 1u) << "executors of one local pool have one agent";
  const pid_t agent = *agents.begin();
  EXPECT_TRUE(eventually(
      [&] { return live_children_of(agent).size() == static_cast<std::size_t>(n); }, kPrompt))
      << "the agent has " << live_children_of(agent).size() << " live executors, expected " << n;
}

// The number of dispatches of a "failure.fated" or "failure.stuck" task that reached a
// process (its try-<n> files).
inline int tries(const std::string& dir) { return count_files(dir, "try-"); }

// The pid that ran try `n` of a task (from its pid-<n> file).
inline pid_t try_pid(const std::string& dir, int n) {
  auto p = await_pid_pair(dir + "/pid-" + std::to_string(n), std::chrono::milliseconds(0));
  return p ? p->pid : 0;
}

}  // namespace ftest
