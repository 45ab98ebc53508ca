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

int cli_main(int argc, char** argv) {
  CLI::App app{"mqpool: Python's multiprocessing.Pool for C++, over a ZeroMQ broker", "mqpool"};
  app.set_version_flag("--version", "mqpool " MQPOOL_VERSION, "print the version and exit");
  // One line, whatever went wrong: CLI11's own message adds a second.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "mqpool: " + std::string(e.what()) + " (see mqpool --help)\n";
  });

  BrokerFlags broker_opts;
  auto* broker = app.add_subcommand("broker", "run a broker until SIGINT/SIGTERM");
  add_broker_options(*broker, broker_opts);

  // Every argument after `worker` (including --help) goes to worker_main's own parser.
  auto* worker = app.add_subcommand(
      "worker", "run a worker agent for a broker (`mqpool worker --help` for its flags)");
  worker->prefix_command();
  worker->set_help_flag();

  mqpool::cli::StatusOptions status_opts;
  auto* status = app.add_subcommand("status", "show the broker's workers, queue and counters");
  mqpool::cli::add_status_options(*status, status_opts);

  mqpool::cli::RunOptions run_opts;
  auto* run = app.add_subcommand(
      "run",
      "mqpool run [OPTIONS] [--] COMMAND ARGS...: run COMMAND once per line of stdin, on the pool");
  mqpool::cli::add_run_options(*run, run_opts);

  std::string key_name;
  auto* keygen = app.add_subcommand(
      "keygen", "write a CurveZMQ key pair: NAME.key (secret, mode 0600) and NAME.pub");
  keygen->add_option("name", key_name, "the key files' path without .key/.pub (e.g. keys/alice)")
      ->required();

  mqpool::cli::BenchOptions bench_opts;
  auto* bench = app.add_subcommand("bench", "run the benchmark workloads, one JSON line each");
  mqpool::cli::add_bench_options(*bench, bench_opts);

  // `mqpool run [OPTIONS] -- COMMAND...`: CLI11 would take the words after "--" for
  // positionals of its own (and read "[a,b]" as a list), so they are cut off here and
  // given to run untouched. Without "--", run's prefix_command() ends its options at the
  // first word that is not one (and a "--" after that word is the command's own).
  std::optional<std::vector<std::string>> run_command;
  if (argc > 1 && std::string_view(argv[1]) == "run") {
    for (int i = 2; i < argc; ++i) {
      if (std::string_view(argv[i]) != "--") continue;
      run_command.emplace(argv + i + 1, argv + argc);
      argc = i;
      break;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    if (rc == 0) return rc;  // --help and --version are "errors" that succeed
    // run's statuses are GNU parallel's: 1-101 count failed jobs, 255 is any other error.
    return run->parsed() ? mqpool::cli::kRunSetupError : kUsageError;
  }
  try {
    if (*broker) return run_broker(broker_opts);
    if (*worker) return run_worker(worker->remaining());
    if (*status) return mqpool::cli::run_status(status_opts);
    if (*bench) return mqpool::cli::run_bench(bench_opts);
    if (*keygen) return mqpool::cli::run_keygen(key_name);
    if (*run) {
      run_opts.command = run->remaining();
      run_opts.command_after_dashes = run_command && run_opts.command.empty();
      if (run_command && !run_opts.command.empty()) run_opts.command.emplace_back("--");
      if (run_command)
        run_opts.command.insert(run_opts.command.end(), run_command->begin(), run_command->end());
      return mqpool::cli::run_jobs(run_opts);
    }
  } catch (const std::exception& e) {
    std::cerr << "mqpool: " << e.what() << '\n';
    return 1;
  }
  // No subcommand: say what there is, as a usage error.
  std::cerr << app.help();
  return kUsageError;
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
