// Fault injection for tests. Code calls fault_point("name") where a real fault could
// arise (a ZeroMQ call failing, EINTR, a bug); a test installs a hook that throws there,
// to prove that the fault is handled. Without a hook (always, outside tests) the cost is
// one relaxed load. A hook set before a fork is inherited by the child processes.
// The points: "executor.heartbeat" (worker/src/executor.cpp, each round of an executor's
// heartbeat thread).
#pragma once

#include <atomic>
#include <string_view>

namespace mqpool::detail {

using FaultHook = void (*)(std::string_view point);

inline std::atomic<FaultHook> g_fault_hook{nullptr};

inline void set_fault_hook(FaultHook hook) { g_fault_hook.store(hook); }

inline void fault_point(std::string_view point) {
  if (FaultHook hook = g_fault_hook.load(std::memory_order_relaxed)) hook(point);
}

}  // namespace mqpool::detail
