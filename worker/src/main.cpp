// mqpool::worker_main: the flags of `mqpool worker`, checked before the agent starts.
#include <dlfcn.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <thread>

#include "common/duration.hpp"
#include "common/endpoint.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "common/size.hpp"
#include "mqpool/registry.hpp"
#include "mqpool/worker.hpp"
#include "worker/agent.hpp"

namespace mqpool {

namespace {

// What errors start with: "mqpool worker" for the command, a user's worker binary's
// own name otherwise.
std::string program_name(int argc, char** argv) {
  if (argc < 1 || argv[0] == nullptr || *argv[0] == '\0') return "worker";
  const std::string name = argv[0];
  return name.starts_with("mqpool ") ? name : std::filesystem::path(name).filename().string();
}

// Loads one --load library, whose MQPOOL_TASK registrations run as it loads. Throws
// std::invalid_argument naming the file and the reason.
void load_library(const std::string& lib) {
  std::error_code ec;
  if (!std::filesystem::exists(lib, ec))
    throw std::invalid_argument("--load " + lib + ": " + std::strerror(ENOENT));
  if (std::filesystem::is_directory(lib, ec))
    throw std::invalid_argument("--load " + lib + ": is a directory, not a shared library");
  // Without a slash dlopen() would search the library path instead of this directory.
  const std::string path = lib.find('/') == std::string::npos ? "./" + lib : lib;
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr)
    throw std::invalid_argument("--load " + lib + ": cannot load it: " + dlerror());
}

// The flags as given, before they are checked.
struct Flags {
  worker::AgentOptions options;
  std::vector<std::string> libs;
  std::string level;
  std::string grace = "10s";
  std::string heartbeat = "1s";
  int liveness = 3;
  std::string curve_secret, broker_key;
  std::string max_message = "256M";
};

void add_flags(CLI::App& app, Flags& f) {
  worker::AgentOptions& o = f.options;
  app.add_option("--connect", o.endpoint, "the broker's worker endpoint, e.g. tcp://HOST:5556")
      ->required();
  app.add_option("--processes", o.processes, "executor processes [one per core]")
      ->capture_default_str();
  app.add_option("--load", f.libs, "a shared library of MQPOOL_TASK functions (repeatable)");
  app.add_option("--maxtasksperchild", o.maxtasksperchild,
                 "replace an executor after this many chunks (0 = never)")
      ->capture_default_str();
  app.add_option("--grace", f.grace,
                 "on SIGTERM, time running tasks get before they are handed back (500ms, 2m)")
      ->capture_default_str();
  app.add_option("--heartbeat", f.heartbeat,
                 "heartbeat interval of the agent and its executors (250ms, 2s)")
      ->capture_default_str();
  app.add_option("--liveness", f.liveness,
                 "heartbeats missed before the broker declares an executor lost")
      ->capture_default_str();
  app.add_option("--log-level", f.level,
                 "trace, debug, info, warn, error or off [MQPOOL_LOG_LEVEL, else warn]");
  app.add_option("--curve-secret", f.curve_secret,
                 "CURVE: this worker's secret key file (mqpool keygen NAME writes NAME.key)");
  app.add_option("--broker-key", f.broker_key, "CURVE: the broker's public key file (NAME.pub)");
  app.add_option("--max-message", f.max_message,
                 "disconnect from a broker that sends a frame larger than SIZE (64K to 1T)")
      ->capture_default_str();
}

// Checks the flags and completes f.options from them, sets the log level, loads the
// libraries and validates the registry. Throws std::invalid_argument (or what a check
// throws) with the message to print.
void apply_flags(Flags& f) {
  worker::AgentOptions& o = f.options;
  detail::check_endpoint("--connect", o.endpoint, detail::EndpointUse::connect);
  if (o.processes < 1)
    throw std::invalid_argument("--processes must be at least 1, got " +
                                std::to_string(o.processes));
  if (o.maxtasksperchild < 0)
    throw std::invalid_argument("--maxtasksperchild must be 0 (never) or more, got " +
                                std::to_string(o.maxtasksperchild));
  o.grace = detail::parse_duration_option("--grace", f.grace);
  o.heartbeat_ms =
      static_cast<std::uint32_t>(detail::parse_duration_option("--heartbeat", f.heartbeat).count());
  if (o.heartbeat_ms == 0) throw std::invalid_argument("--heartbeat must be at least 1ms");
  if (f.liveness < 1)
    throw std::invalid_argument("--liveness must be at least 1, got " + std::to_string(f.liveness));
  o.liveness = static_cast<std::uint32_t>(f.liveness);
  o.max_message = detail::parse_max_message_option("--max-message", f.max_message);
  o.curve =
      detail::load_curve_client(f.curve_secret, f.broker_key, "--curve-secret", "--broker-key");
  detail::configure_log_level(f.level);
  for (const auto& lib : f.libs) load_library(lib);
  detail::Registry::instance().validate();
}

}  // namespace

int worker_main(int argc, char** argv) {
  const std::string program = program_name(argc, argv);
  CLI::App app{"Runs a worker agent: executor processes that take tasks from a broker.", program};
  app.failure_message([program](const CLI::App*, const CLI::Error& e) {
    return program + ": " + e.what() + " (see " + program + " --help)\n";
  });
  Flags flags;
  flags.options.processes = detail::default_processes();
  add_flags(app, flags);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;  // --help succeeds; anything else is a usage error
  }
  try {
    apply_flags(flags);
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return 1;
  }
  return worker::run_agent(flags.options);
}

}  // namespace mqpool
