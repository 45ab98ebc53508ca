// No exception escapes the client's threads (issue 11, item 2): a fault on the local
// broker thread or on a cluster pool's link thread fails every outstanding task with its
// cause, the pool refuses new work, and close()/join() return (the link thread's case
// and EINTR on a send are in test_cluster.cpp). Without that policy the exception reached
// std::terminate and took the program down. The faults come from fault points
// (common/internal/common/fault.hpp).
#include <mqpool/mqpool.hpp>

#include "common.hpp"
#include "common/fault.hpp"

namespace ftest {
namespace {

std::atomic<int> g_faults{0};  // faults still to inject
std::atomic<bool> g_on{false};

void broker_loop_fault(std::string_view point) {
  if (point == "broker.loop" && g_on.load() && g_faults.fetch_sub(1) > 0)
    throw std::runtime_error("injected fault at broker.loop");
}

// Installs a hook, disarmed, for one test (declare it before the pool).
struct Hook {
  explicit Hook(mqpool::detail::FaultHook hook) { mqpool::detail::set_fault_hook(hook); }
  ~Hook() {
    g_on = false;
    mqpool::detail::set_fault_hook(nullptr);
  }
  void arm(int faults) {
    g_faults = faults;
    g_on = true;
  }
};

struct TerminateOnExit {
  mqpool::Pool& pool;
  ~TerminateOnExit() { pool.terminate(); }
};

// `r` fails with E, whose message names `cause`.
template <class E, class R>
void fails_with(R& r, const std::string& cause) {
  try {
    (void)r.get(kLong);
    ADD_FAILURE() << "the task succeeded";
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(cause), std::string::npos) << e.what();
  } catch (const mqpool::TimeoutError&) {
    ADD_FAILURE() << "no outcome: the failure was not passed on";
  }
}

// After a driver thread failed: new work is refused at once and join() returns.
void refuses_work_and_joins(mqpool::Pool& pool, const std::string& cause) {
  try {
    (void)pool.apply_async(pid, std::int64_t{0});
    ADD_FAILURE() << "a broken pool took new work";
  } catch (const mqpool::PoolStateError& e) {
    EXPECT_NE(std::string(e.what()).find(cause), std::string::npos) << e.what();
  }
  pool.close();
  bounded(kLong, "join", [&] { pool.join(); });
}

TEST(ThreadFaults, AFailedLocalBrokerThreadFailsEveryOutstandingTaskWithItsCause) {
  TempDir dir;
  OpenOnExit gate(dir.file("gate"));
  Hook hook(broker_loop_fault);
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 1});
  TerminateOnExit guard{pool};
  auto running =
      pool.apply_async(pid_then_wait, dir.file("p0"), dir.file("gate"), std::int64_t{60000});
  ASSERT_TRUE(await_pid_pair(dir.file("p0")));
  hook.arm(1);
  // Work in flight: this call wakes the broker's thread, which meets the fault.
  auto queued = pool.apply_async(pid, std::int64_t{0});
  fails_with<mqpool::PoolStateError>(running, "injected fault at broker.loop");
  fails_with<mqpool::PoolStateError>(queued, "injected fault at broker.loop");
  refuses_work_and_joins(pool, "injected fault at broker.loop");
}

}  // namespace
}  // namespace ftest
