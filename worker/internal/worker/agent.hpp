// The worker agent (a forkserver) and the executor loop it forks.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/curve.hpp"
#include "common/protocol.hpp"

namespace mqpool::worker {

struct AgentOptions {
  std::string endpoint;                      // the broker's worker-facing endpoint
  std::optional<detail::CurveClient> curve;  // CURVE keys of every socket to the broker
  int processes = 1;                         // executors kept alive
  int maxtasksperchild = 0;
  std::function<void()> initializer;
  int parent_fd = -1;  // local mode: read end of a pipe the client holds; EOF = client gone
  // TASK messages an executor may hold at once. The broker uses the second only to
  // prefetch behind work it has measured as short (broker/src/core.cpp, kPrefetchHorizon).
  std::uint32_t credit = 2;
  std::uint32_t heartbeat_ms = 1000;  // Paranoid Pirate timing: interval and liveness
  std::uint32_t liveness = 3;
  // SIGTERM/SIGINT: running tasks may finish for this long before they are killed and
  // handed back to the broker (`mqpool worker --grace`).
  std::chrono::milliseconds grace{10000};
  std::int64_t max_message = proto::kDefaultMaxMessage;  // every socket's ZMQ_MAXMSGSIZE
  // Local pools: the client's pid, and the size from which arguments and values travel
  // through shared memory (common/shm.hpp). 0 and 0 for a cluster worker: all inline.
  pid_t client_pid = 0;
  std::int64_t shared_memory_threshold = 0;
};

// Runs the agent: forks `processes` executors, reports each one's exit to the broker at
// once, forks replacements, kills the one the broker names. Returns the exit code when
// SIGTERM/SIGINT arrives or parent_fd closes, after killing and reaping every executor.
// Must be called from a single-threaded process (it forks).
int run_agent(const AgentOptions& options);

// Exit code of an executor that left on purpose (maxtasksperchild).
inline constexpr int kPlannedExit = 75;

// The executor's main loop, in a freshly forked child of the agent. Never returns.
[[noreturn]] void run_executor(const AgentOptions& options, std::uint64_t agent);

// "killed by signal 9 (SIGKILL)" or "exited with code 3", from a waitpid status.
std::string describe_exit(int status);

}  // namespace mqpool::worker
