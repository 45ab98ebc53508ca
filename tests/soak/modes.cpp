#include "modes.hpp"

#include <unistd.h>

#include <algorithm>
#include <stdexcept>

namespace soak {

namespace {

constexpr int kLocalProcesses = 2;  // per local pool: 4 executors on a 2-core machine

// The one child of this process that is not in `known`: the agent a local Pool's
// constructor has just forked.
pid_t new_child(const std::vector<pid_t>& known) {
  std::vector<pid_t> fresh;
  for (const pid_t pid : children_of(::getpid()))
    if (std::find(known.begin(), known.end(), pid) == known.end()) fresh.push_back(pid);
  if (fresh.size() != 1)
    throw std::runtime_error("expected one new child (the pool's agent), found " +
                             std::to_string(fresh.size()));
  return fresh[0];
}

// Every process a local pool started (its agent, and the agent's executors) has ended.
void expect_no_children(Soak& s, Lane& main) {
  main.begin("waiting for the agents to be gone");
  for (const auto until = Clock::now() + 10s; Clock::now() < until;) {
    if (children_of(::getpid()).empty()) return main.end();
    std::this_thread::sleep_for(50ms);
  }
  s.fail(std::to_string(children_of(::getpid()).size()) + " child processes outlived the pools");
}

}  // namespace

int run_local(const Config& cfg) {
  Soak s("local");
  s.say("two local pools of " + std::to_string(kLocalProcesses) +
        " processes: main (max_retries 1) and timed (task_timeout 1000 ms, max_retries 0), " +
        describe_run(cfg));
  // Both before any thread of ours: a local pool forks its agent.
  auto main_pool = std::make_unique<mqpool::Pool>(
      mqpool::PoolOptions{.processes = kLocalProcesses, .max_retries = 1});
  const pid_t main_agent = new_child({});
  add_emergency_kill(main_agent);
  auto timed_pool = std::make_unique<mqpool::Pool>(mqpool::PoolOptions{
      .processes = kLocalProcesses, .task_timeout = kTaskTimeout, .max_retries = 0});
  const pid_t timed_agent = new_child({main_agent});
  add_emergency_kill(timed_agent);
  const Setup setup{
      .pools = {{main_pool.get(), "main", 1, {}}, {timed_pool.get(), "timed", 0, kTaskTimeout}},
      .agents = {main_agent, timed_agent},
      .watched = {
          {"client", ::getpid(), "the soak process; both pools' brokers are threads in it"},
          {"agent", main_agent, "the main pool's worker agent, a forked child of the client"},
          {"timed agent", timed_agent, "the timed pool's worker agent, likewise"}}};
  Lanes lanes;
  Watchdog watchdog(s, lanes, Clock::now() + cfg.total + kTeardown);
  run(s, lanes, setup, cfg);
  end_pools(s, lanes.main, {&main_pool, &timed_pool});
  expect_no_children(s, lanes.main);
  s.say(s.failed() ? "FAILED" : "passed");
  return s.failed() ? 1 : 0;
}

}  // namespace soak
