// The `mqpool` command: CLI11 wiring only. Each subcommand delegates to the library
// (broker, worker) or to its own file (bench.cpp, run.cpp, status.cpp).
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <mqpool/broker.hpp>
#include <mqpool/worker.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench.hpp"
#include "common/size.hpp"
#include "keygen.hpp"
#include "run.hpp"
#include "status.hpp"

#ifndef MQPOOL_VERSION
#error "MQPOOL_VERSION comes from the project's version (cli/CMakeLists.txt)"
#endif

namespace {

// Exit status of a command line that could not be parsed (and of `mqpool` alone).
constexpr int kUsageError = 2;

// Calls worker_main with the worker subcommand's arguments, untouched, so that the
// flags of `mqpool worker` and of a user's worker binary are one and the same parser.
int run_worker(const std::vector<std::string>& args) {
  std::vector<std::string> owned{"mqpool worker"};
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(owned.size() + 1);
  for (auto& s : owned) argv.push_back(s.data());
  argv.push_back(nullptr);
  return mqpool::worker_main(static_cast<int>(owned.size()), argv.data());
}

// The flags of `mqpool broker`; a size is a string until it is checked (max_message).
struct BrokerFlags {
  mqpool::BrokerOptions options;
  std::string max_message = "256M";
};

void add_broker_options(CLI::App& sub, BrokerFlags& f) {
  mqpool::BrokerOptions& o = f.options;
  sub.add_option("--frontend", o.frontend,
                 "endpoint clients connect to (tcp://HOST:PORT, ipc://PATH)")
      ->capture_default_str();
  sub.add_option("--backend", o.backend, "endpoint workers connect to")->capture_default_str();
  sub.add_option("--log-level", o.log_level,
                 "trace, debug, info, warn, error or off [MQPOOL_LOG_LEVEL, else warn]");
  sub.add_option("--curve-secret", o.curve_secret_file,
                 "CURVE: this broker's secret key file (mqpool keygen NAME writes NAME.key)");
  sub.add_option("--authorized-keys", o.authorized_keys_dir,
                 "CURVE: a directory of the .pub files admitted: DIR's on both endpoints, "
                 "DIR/clients' and DIR/workers' on that one only (read again on SIGHUP)");
  sub.add_flag("--insecure", o.insecure,
               "no warning for endpoints beyond loopback without CURVE (anyone who reaches "
               "them can run commands on the workers)");
  sub.add_option("--max-message", f.max_message,
                 "disconnect a peer that sends a frame larger than SIZE (64K to 1T; K, M, G)")
      ->capture_default_str();
}

int run_broker(BrokerFlags& f) {
  try {
    f.options.max_message =
        mqpool::detail::parse_max_message_option("--max-message", f.max_message);
  } catch (const std::invalid_argument& e) {
    std::cerr << "mqpool broker: " << e.what() << '\n';
    return 1;
  }
  return mqpool::run_broker(f.options);
}

// The subcommands, and the options each one's flags write into (bound by address:
// made once, in place, by cli_main).
struct Commands {
  BrokerFlags broker_opts;
  mqpool::cli::StatusOptions status_opts;
  mqpool::cli::RunOptions run_opts;
  std::string key_name;
  mqpool::cli::BenchOptions bench_opts;
  CLI::App* broker = nullptr;
  CLI::App* worker = nullptr;
  CLI::App* status = nullptr;
  CLI::App* run = nullptr;
  CLI::App* keygen = nullptr;
  CLI::App* bench = nullptr;
};

void add_commands(CLI::App& app, Commands& c) {
  c.broker = app.add_subcommand("broker", "run a broker until SIGINT/SIGTERM");
  add_broker_options(*c.broker, c.broker_opts);

  // Every argument after `worker` (including --help) goes to worker_main's own parser.
  c.worker = app.add_subcommand(
      "worker", "run a worker agent for a broker (`mqpool worker --help` for its flags)");
  c.worker->prefix_command();
  c.worker->set_help_flag();

  c.status = app.add_subcommand("status", "show the broker's workers, queue and counters");
  mqpool::cli::add_status_options(*c.status, c.status_opts);

  c.run = app.add_subcommand(
      "run",
      "mqpool run [OPTIONS] [--] COMMAND ARGS...: run COMMAND once per line of stdin, on the pool");
  mqpool::cli::add_run_options(*c.run, c.run_opts);

  c.keygen = app.add_subcommand(
      "keygen", "write a CurveZMQ key pair: NAME.key (secret, mode 0600) and NAME.pub");
  c.keygen
      ->add_option("name", c.key_name, "the key files' path without .key/.pub (e.g. keys/alice)")
      ->required();

  c.bench = app.add_subcommand("bench", "run the benchmark workloads, one JSON line each");
  mqpool::cli::add_bench_options(*c.bench, c.bench_opts);
}

// `mqpool run [OPTIONS] -- COMMAND...`: CLI11 would take the words after "--" for
// positionals of its own (and read "[a,b]" as a list), so they are cut off here (argc
// shrinks) and given to run untouched. Without "--", run's prefix_command() ends its
// options at the first word that is not one (and a "--" after that word is the command's
// own).
std::optional<std::vector<std::string>> cut_run_command(int& argc, char** argv) {
  if (argc <= 1 || std::string_view(argv[1]) != "run") return std::nullopt;
  for (int i = 2; i < argc; ++i) {
    if (std::string_view(argv[i]) != "--") continue;
    std::vector<std::string> command(argv + i + 1, argv + argc);
    argc = i;
    return command;
  }
  return std::nullopt;
}

// Runs the subcommand that was parsed; kUsageError if there was none.
int dispatch(const CLI::App& app, Commands& c,
             const std::optional<std::vector<std::string>>& run_command) {
  if (*c.broker) return run_broker(c.broker_opts);
  if (*c.worker) return run_worker(c.worker->remaining());
  if (*c.status) return mqpool::cli::run_status(c.status_opts);
  if (*c.bench) return mqpool::cli::run_bench(c.bench_opts);
  if (*c.keygen) return mqpool::cli::run_keygen(c.key_name);
  if (*c.run) {
    auto& command = c.run_opts.command;
    command = c.run->remaining();
    c.run_opts.command_after_dashes = run_command && command.empty();
    if (run_command && !command.empty()) command.emplace_back("--");
    if (run_command) command.insert(command.end(), run_command->begin(), run_command->end());
    return mqpool::cli::run_jobs(c.run_opts);
  }
  // No subcommand: say what there is, as a usage error.
  std::cerr << app.help();
  return kUsageError;
}

int cli_main(int argc, char** argv) {
  CLI::App app{"mqpool: Python's multiprocessing.Pool for C++, over a ZeroMQ broker", "mqpool"};
  app.set_version_flag("--version", "mqpool " MQPOOL_VERSION, "print the version and exit");
  // One line, whatever went wrong: CLI11's own message adds a second.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "mqpool: " + std::string(e.what()) + " (see mqpool --help)\n";
  });
  Commands commands;
  add_commands(app, commands);
  const auto run_command = cut_run_command(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    if (rc == 0) return rc;  // --help and --version are "errors" that succeed
    // run's statuses are GNU parallel's: 1-101 count failed jobs, 255 is any other error.
    return commands.run->parsed() ? mqpool::cli::kRunSetupError : kUsageError;
  }
  try {
    return dispatch(app, commands, run_command);
  } catch (const std::exception& e) {
    std::cerr << "mqpool: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace

// What the subcommands throw is caught in cli_main; this catches the rest (setting up the
// parser, printing), so that nothing ends the program with std::terminate.
int main(int argc, char** argv) {
  try {
    return cli_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mqpool: %s\n", e.what());
  } catch (...) {
    std::fputs("mqpool: unknown error\n", stderr);
  }
  return 1;
}
