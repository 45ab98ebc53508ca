// The cluster mode: `mqpool broker` (the build's cli/mqpool) and a worker agent (this
// binary re-executed in its `worker` role, so that it has the soak tasks), both started
// here, and two pools connected to the broker.
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>

#include "modes.hpp"

#ifndef MQPOOL_SOAK_CLI
#error "MQPOOL_SOAK_CLI: the path of the build's mqpool command (tests/soak/CMakeLists.txt)"
#endif

namespace soak {

namespace {

constexpr int kExecutors = 3;  // shared by both pools

struct Endpoints {
  std::string clients, workers;
};

// The broker's first line: "mqpool broker: clients on EP, workers on EP", with the ports
// it bound for tcp://127.0.0.1:* (never a fixed port: CI may run anything beside us).
Endpoints read_endpoints(Child& broker) {
  const std::string line = broker.read_line(Clock::now() + 15s);
  const std::string clients = "mqpool broker: clients on ", workers = ", workers on ";
  const auto sep = line.find(workers);
  if (!line.starts_with(clients) || sep == std::string::npos)
    throw std::runtime_error("the broker printed '" + line + "', not its endpoints");
  return {line.substr(clients.size(), sep - clients.size()), line.substr(sep + workers.size())};
}

// Forwards what the helpers print, and fails the run if one of them ends during it.
std::function<void()> watch_helpers(Soak& s, Child& broker, Child& worker) {
  return [&s, &broker, &worker] {
    for (Child* c : {&broker, &worker}) {
      if (const std::string out = c->drain(); !out.empty())
        s.say(c->what() + " printed: " + out.substr(0, out.find_last_not_of('\n') + 1));
      if (const auto state = c->state(); !state.empty() && !s.failed())
        s.fail(c->what() + " ended during the run: it " + state);
    }
  };
}

// SIGTERM: with no work left, each must exit 0 promptly (the worker after its --grace).
void stop_helper(Soak& s, Lane& main, Child& c) {
  const bool ended = !c.state().empty();
  main.begin("stopping " + c.what());
  const int status = c.stop(30s);
  main.end();
  if (!ended && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
    s.fail(c.what() + " " + describe_status(status) + " after SIGTERM, expected exit code 0");
}

std::unique_ptr<mqpool::Pool> connect(const std::string& front, std::chrono::milliseconds timeout,
                                      int max_retries) {
  return std::make_unique<mqpool::Pool>(mqpool::PoolOptions{.connect = front,
                                                            .task_timeout = timeout,
                                                            .max_retries = max_retries,
                                                            .connect_timeout = 30s});
}

}  // namespace

int run_cluster(const Config& cfg) {
  Soak s("cluster");
  Child broker(
      "the broker", MQPOOL_SOAK_CLI,
      {"mqpool", "broker", "--frontend", "tcp://127.0.0.1:*", "--backend", "tcp://127.0.0.1:*"},
      true);
  const Endpoints ep = read_endpoints(broker);
  Child worker(
      "the worker agent", "/proc/self/exe",
      {"mqpool-soak", "worker", "--connect", ep.workers, "--processes", std::to_string(kExecutors)},
      true);
  const std::string hello = worker.read_line(Clock::now() + 30s);
  if (hello.find("soak.picky") == std::string::npos)
    throw std::runtime_error("the worker printed '" + hello + "', not its connection and tasks");
  s.say("broker at " + ep.clients + " (workers " + ep.workers + "); " + hello);
  s.say(
      "two cluster pools: main (max_retries 1) and timed (task_timeout 1000 ms, max_retries 0), " +
      describe_run(cfg));
  auto main_pool = connect(ep.clients, 0ms, 1);
  auto timed_pool = connect(ep.clients, kTaskTimeout, 0);
  const Setup setup{
      .pools = {{main_pool.get(), "main", 1, {}}, {timed_pool.get(), "timed", 0, kTaskTimeout}},
      .agents = {worker.pid()},
      .watched = {{"client", ::getpid(), "the soak process, both pools' client"},
                  {"broker", broker.pid(), "`mqpool broker`, " MQPOOL_SOAK_CLI},
                  {"agent", worker.pid(),
                   "the worker agent: this binary through worker_main, " +
                       std::to_string(kExecutors) + " executors"}}};
  Lanes lanes;
  Watchdog watchdog(s, lanes, Clock::now() + cfg.total + kTeardown);
  watchdog.set_poll(watch_helpers(s, broker, worker));
  run(s, lanes, setup, cfg);
  watchdog.set_poll({});  // from here on only this thread touches the helpers
  end_pools(s, lanes.main, {&main_pool, &timed_pool});
  stop_helper(s, lanes.main, worker);
  stop_helper(s, lanes.main, broker);
  s.say(s.failed() ? "FAILED" : "passed");
  return s.failed() ? 1 : 0;
}

}  // namespace soak
