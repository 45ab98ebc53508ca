#include <dlfcn.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <thread>

#include "agent.hpp"
#include "log.hpp"
#include "mqpool/registry.hpp"
#include "mqpool/worker.hpp"

namespace mqpool {

int worker_main(int argc, char** argv) {
  CLI::App app{"mqpool worker: runs executor processes for a broker", "worker"};
  worker::AgentOptions o;
  o.processes = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::string> libs;
  std::string level;
  app.add_option("--connect", o.endpoint, "the broker's worker endpoint, e.g. tcp://HOST:5556")
      ->required();
  app.add_option("--processes", o.processes, "executor processes [cores]")
      ->check(CLI::PositiveNumber);
  app.add_option("--load", libs, "shared library with MQPOOL_TASK functions (repeatable)")
      ->check(CLI::ExistingFile);
  app.add_option("--maxtasksperchild", o.maxtasksperchild,
                 "replace an executor after this many chunks [0 = never]")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--log-level", level, "trace, debug, info, warn, error [warn]");
  CLI11_PARSE(app, argc, argv);
  if (!level.empty()) detail::set_log_level(level);
  for (const auto& lib : libs) {
    if (dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      std::cerr << "mqpool worker: cannot load " << lib << ": " << dlerror() << "\n";
      return 2;
    }
  }
  try {
    detail::Registry::instance().validate();
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  return worker::run_agent(o);
}

}  // namespace mqpool
