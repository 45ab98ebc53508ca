// mqpool's soak test (`make soak`): a local and a cluster pool, each under a mix of map,
// imap, apply_async with callbacks, task errors, timeouts and killed executors for
// SOAK_SECONDS (default 600), checking every answer and the RSS of every process.
//
//   mqpool_soak           both modes at once, as two processes (what `make soak` runs)
//   mqpool_soak local     the local mode only
//   mqpool_soak cluster   the cluster mode only
//   mqpool_soak worker --connect EP ...   (internal) the cluster mode's worker program
//
// Exit codes: 0 passed; 1 a wrong answer, a hang, RSS growth or a process that would not
// end (the output says which); 2 a bad command line or SOAK_SECONDS.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <mqpool/worker.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "modes.hpp"

namespace {

using soak::Clock;

// SOAK_SECONDS: whole seconds, at least 10, so that the warm-up (at least 5 s) leaves as
// long again to measure. SOAK_SEED: the lanes' random choices (printed, to replay).
std::optional<soak::Config> config_from_env() {
  soak::Config cfg;
  if (const char* v = std::getenv("SOAK_SECONDS"); v != nullptr && *v != '\0') {
    const std::string text = v;
    if (text.find_first_not_of("0123456789") != std::string::npos || text.size() > 7 ||
        std::stol(text) < 10) {
      std::cerr << "mqpool_soak: SOAK_SECONDS must be a whole number of seconds, at least 10; got '"
                << text << "'\n";
      return std::nullopt;
    }
    cfg.total = std::chrono::seconds(std::stol(text));
  }
  // The broker's heap takes some 30 s of soak traffic to reach its size (measured: its
  // RSS, read with the lanes paused, grows by 10-20 % from 12 s to 60 s, then stays within
  // a few % for minutes), so short runs warm up for half their time, up to 30 s.
  cfg.warmup = std::max(
      {std::chrono::seconds(5), cfg.total / 5, std::min(std::chrono::seconds(30), cfg.total / 2)});
  const char* seed = std::getenv("SOAK_SEED");
  cfg.seed =
      seed != nullptr && *seed != '\0' ? std::strtoull(seed, nullptr, 10) : std::random_device{}();
  return cfg;
}

// Both modes at once, each in a process of its own: the wall time stays SOAK_SECONDS.
int run_both(const soak::Config& cfg) {
  std::cout << "mqpool_soak: the local and the cluster mode run concurrently, as two processes, "
            << soak::describe_run(cfg) << std::endl;
  ::setenv("SOAK_SEED", std::to_string(cfg.seed).c_str(), 1);  // both print the same seed
  soak::Child local("the local mode", "/proc/self/exe", {"mqpool_soak", "local"}, false);
  soak::Child cluster("the cluster mode", "/proc/self/exe", {"mqpool_soak", "cluster"}, false);
  // Each mode has its own watchdog; this one is for a mode that could not even run it.
  const auto deadline = Clock::now() + cfg.total + soak::kTeardown + std::chrono::seconds(60);
  bool ok = true;
  for (soak::Child* mode : {&local, &cluster}) {
    if (!mode->wait(deadline))
      std::cout << "mqpool_soak: " << mode->what() << " hangs: ending it\n";
    const std::string how = mode->state().empty() ? "did not end" : mode->state();
    const int status = mode->stop(std::chrono::seconds(5));
    const bool passed = WIFEXITED(status) && WEXITSTATUS(status) == 0 && how != "did not end";
    ok = ok && passed;
    std::cout << "mqpool_soak: " << mode->what()
              << (passed ? " passed" : " FAILED (it " + how + ")") << std::endl;
  }
  std::cout << (ok ? "mqpool_soak: passed" : "mqpool_soak: FAILED") << std::endl;
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  soak::fix_mmap_threshold();
  const std::string role = argc > 1 ? argv[1] : "";
  if (role == "worker") {  // before anything starts a thread: the agent forks
    std::vector<char*> args{argv[0]};
    args.insert(args.end(), argv + 2, argv + argc);
    args.push_back(nullptr);
    return mqpool::worker_main(static_cast<int>(args.size()) - 1, args.data());
  }
  if (argc > 2 || (argc == 2 && role != "local" && role != "cluster")) {
    std::cerr << "usage: mqpool_soak [local|cluster]   (SOAK_SECONDS, default 600; SOAK_SEED)\n";
    return 2;
  }
  const auto cfg = config_from_env();
  if (!cfg) return 2;
  try {
    if (role == "local") return soak::run_local(*cfg);
    if (role == "cluster") return soak::run_cluster(*cfg);
    return run_both(*cfg);
  } catch (const std::exception& e) {
    std::cout << "[" << (role.empty() ? "soak" : role) << "] FAILURE: " << e.what() << std::endl;
    return 1;
  }
}
