// The failure tests' main(). Run normally, it is gtest's. Re-executed by a test with
// MQPOOL_FAILURE_SCENARIO set (helpers.hpp: Scenario), it plays a helper role instead:
// a client process for the test to SIGKILL, a standalone broker, a worker agent.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mqpool/broker.hpp>
#include <mqpool/mqpool.hpp>
#include <mqpool/worker.hpp>
#include <string>
#include <thread>
#include <vector>

#include "helpers.hpp"
#include "tasks.hpp"

namespace ftest {
namespace {

// A client with a two-process pool whose executors are busy in tasks that block. Once
// both have started it writes "<client> <agent> <executor> <executor>" to <dir>/ready
// and waits to be killed. Exit codes: 3 = the tasks did not start in time, 4 = nobody
// killed it within two minutes.
int orphan_client(const std::string& dir) {
  mqpool::Pool pool(2);
  std::vector<mqpool::AsyncResult<std::int64_t>> running;
  for (int i = 0; i < 2; ++i)
    running.push_back(pool.apply_async(pid_then_wait, dir + "/exec-" + std::to_string(i),
                                       dir + "/never", std::int64_t{120000}));
  // Queued behind them: the broker holds work for the dead client too.
  for (int i = 2; i < 4; ++i)
    running.push_back(pool.apply_async(pid_then_wait, dir + "/exec-" + std::to_string(i),
                                       dir + "/never", std::int64_t{120000}));
  const auto a = await_pid_pair(dir + "/exec-0");
  const auto b = await_pid_pair(dir + "/exec-1");
  if (!a || !b) std::_Exit(3);
  {
    std::ofstream out(dir + "/ready.tmp");
    out << getpid() << ' ' << a->ppid << ' ' << a->pid << ' ' << b->pid << '\n';
  }
  std::rename((dir + "/ready.tmp").c_str(), (dir + "/ready").c_str());
  // Not synchronisation: a limit on how long this helper lingers if the test dies.
  std::this_thread::sleep_for(std::chrono::minutes(2));
  std::_Exit(4);
}

// A cluster client (of the broker on <dir>/front) whose tasks block: one runs on the
// only executor, three wait behind it. Once it runs, it writes "<client> <executor>"
// to <dir>/ready and waits to be killed (exit 3: the task did not start; 4: not killed).
int cluster_client(const std::string& dir) {
  // Heartbeats far apart: the broker can only learn of its death from the connection.
  mqpool::Pool pool(mqpool::PoolOptions{.connect = "ipc://" + dir + "/front",
                                        .heartbeat_interval = std::chrono::seconds(20)});
  std::vector<mqpool::AsyncResult<std::int64_t>> waiting;
  for (int i = 0; i < 4; ++i)
    waiting.push_back(pool.apply_async(pid_then_wait, dir + "/dead-" + std::to_string(i),
                                       dir + "/never", std::int64_t{120000}));
  const auto a = await_pid_pair(dir + "/dead-0");
  if (!a) std::_Exit(3);
  write_file_atomically(dir + "/ready", std::to_string(getpid()) + " " + std::to_string(a->pid));
  std::this_thread::sleep_for(std::chrono::minutes(2));  // a bound, not synchronisation
  std::_Exit(4);
}

}  // namespace
}  // namespace ftest

int main(int argc, char** argv) {
  if (const char* scenario = std::getenv("MQPOOL_FAILURE_SCENARIO")) {
    const char* dir = std::getenv("MQPOOL_FAILURE_DIR");
    const std::string role = scenario;
    if (role == "orphan_client" && dir != nullptr) return ftest::orphan_client(dir);
    if (role == "cluster_client" && dir != nullptr) return ftest::cluster_client(dir);
    // `mqpool broker` on <dir>/front (clients) and <dir>/back (workers).
    if (role == "broker" && dir != nullptr)
      return mqpool::run_broker(
          {"ipc://" + std::string(dir) + "/front", "ipc://" + std::string(dir) + "/back"});
    // `mqpool worker` with this binary's tasks; the arguments are the worker's options.
    if (role == "worker") return mqpool::worker_main(argc, argv);
    std::fprintf(stderr, "unknown MQPOOL_FAILURE_SCENARIO '%s' (or no MQPOOL_FAILURE_DIR)\n",
                 scenario);
    return 2;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
