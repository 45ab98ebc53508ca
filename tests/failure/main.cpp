// The failure tests' main(). Run normally, it is gtest's. Re-executed by a test with
// MQPOOL_FAILURE_SCENARIO set (helpers.hpp: Scenario), it plays a helper role instead:
// a client process for the test to SIGKILL, a standalone broker, a worker agent, a
// program that makes pools while its other threads log.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mqpool/broker.hpp>
#include <mqpool/mqpool.hpp>
#include <mqpool/worker.hpp>
#include <string>
#include <string_view>
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
// With `big`, the running tasks take a large argument (through shared memory).
int orphan_client(const std::string& dir, bool big) {
  // The pool's socket folder goes under <dir>/tmp, where the test looks for leftovers.
  const std::string tmp = dir + "/tmp";
  if (::mkdir(tmp.c_str(), 0700) != 0 || ::setenv("TMPDIR", tmp.c_str(), 1) != 0) std::_Exit(5);
  // With `big`, 1 MiB arguments go through shared memory (the default threshold is higher).
  mqpool::Pool pool(mqpool::PoolOptions{
      .processes = 2,
      .shared_memory_threshold = big ? 1 << 18 : mqpool::PoolOptions{}.shared_memory_threshold});
  std::vector<mqpool::AsyncResult<std::int64_t>> running;
  for (int i = 0; i < 2; ++i) {
    const std::string pid_path = dir + "/exec-" + std::to_string(i);
    if (big)
      running.push_back(pool.apply_async(bytes_then_wait, pid_path, dir + "/never",
                                         std::int64_t{120000}, pattern_bytes(1 << 20, i)));
    else
      running.push_back(
          pool.apply_async(pid_then_wait, pid_path, dir + "/never", std::int64_t{120000}));
  }
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

// Threads that, until destroyed, log with spdlog's default logger and allocate, as a
// user's program may: at any moment one of them is likely inside spdlog's console mutex
// (and the tz lock that its time formatting takes under it) or malloc's locks.
class Hammers {
 public:
  explicit Hammers(int n) {
    for (int t = 0; t < n; ++t)
      threads_.emplace_back([this, t] {
        for (std::uint64_t i = 0; !stop_.load(std::memory_order_relaxed); ++i) {
          spdlog::info("hammer {} line {}", t, i);
          // Through a volatile pointer, so that the compiler cannot drop the pair.
          char* volatile p = static_cast<char*>(std::malloc(64 + i % 4096));
          p[0] = 1;
          std::free(p);
        }
      });
  }
  ~Hammers() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// Issue 11, item 6: 200 one-process pools made one after another while three Hammers
// run; in each, one apply of "failure.log_line" (a task that logs with spdlog's default
// logger). Writes "round <n>" to stderr before each. Exit codes: 0 = every round right,
// 3 = a task did not return within kLong (a child deadlocked on a lock held at the
// fork; the pool cannot be shut down then, so it exits at once), 5 = a wrong value. It
// leads a process group of its own, so that the test can kill its agents and executors.
int fork_under_threads() {
  ::setpgid(0, 0);
  Hammers hammers(3);
  for (std::int64_t round = 0; round < 200; ++round) {
    std::fprintf(stderr, "round %lld\n", static_cast<long long>(round));
    mqpool::Pool pool(mqpool::PoolOptions{.processes = 1});
    std::int64_t got = 0;
    try {
      got = pool.apply_async(log_line, round).get(kLong);
    } catch (const mqpool::TimeoutError& e) {
      std::fprintf(stderr, "round %lld: %s\n", static_cast<long long>(round), e.what());
      std::fflush(stderr);
      std::_Exit(3);
    }
    if (got != 2 * round + 1) {
      std::fprintf(stderr, "round %lld: got %lld\n", static_cast<long long>(round),
                   static_cast<long long>(got));
      return 5;
    }
  }
  std::fprintf(stderr, "all rounds done\n");
  return 0;
}

}  // namespace
}  // namespace ftest

int main(int argc, char** argv) {
  if (const char* scenario = std::getenv("MQPOOL_FAILURE_SCENARIO")) {
    const char* dir = std::getenv("MQPOOL_FAILURE_DIR");
    const std::string role = scenario;
    if (role == "orphan_client" && dir != nullptr)
      return ftest::orphan_client(dir, argc == 2 && std::string_view(argv[1]) == "big");
    if (role == "cluster_client" && dir != nullptr) return ftest::cluster_client(dir);
    if (role == "fork_under_threads") return ftest::fork_under_threads();
    // `mqpool broker` on <dir>/front (clients) and <dir>/back (workers); with two
    // arguments, CURVE: its secret key file and the directory of admitted keys; with one,
    // its --max-message in bytes.
    if (role == "broker" && dir != nullptr) {
      mqpool::BrokerOptions o{"ipc://" + std::string(dir) + "/front",
                              "ipc://" + std::string(dir) + "/back"};
      if (argc == 2) o.max_message = std::stoll(argv[1]);
      if (argc == 3) {
        o.curve_secret_file = argv[1];
        o.authorized_keys_dir = argv[2];
      }
      return mqpool::run_broker(o);
    }
    // `mqpool worker` with this binary's tasks; the arguments are the worker's options.
    if (role == "worker") return mqpool::worker_main(argc, argv);
    std::fprintf(stderr, "unknown MQPOOL_FAILURE_SCENARIO '%s' (or no MQPOOL_FAILURE_DIR)\n",
                 scenario);
    return 2;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
