// The `mqpool` command: CLI11 wiring only. Each subcommand delegates to the library
// (broker, worker) or to its own file (bench.cpp).
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <mqpool/broker.hpp>
#include <mqpool/worker.hpp>
#include <string>
#include <vector>

#include "bench.hpp"

namespace {

// Registers a subcommand that a later version provides: it has a proper --help, and
// running it says so clearly and exits 2 instead of pretending to succeed.
CLI::App* add_not_yet(CLI::App& app, const std::string& name, const std::string& what) {
  auto* sub = app.add_subcommand(name, what + " (not implemented yet in this version)");
  sub->callback([name] {
    std::cerr << "mqpool " << name << ": not implemented yet in this version\n";
    throw CLI::RuntimeError(2);
  });
  return sub;
}

// Calls worker_main with the worker subcommand's arguments, untouched, so that the
// flags of `mqpool worker` and of a user's worker binary are one and the same parser.
int run_worker(const std::vector<std::string>& args) {
  std::vector<std::string> owned{"mqpool worker"};
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : owned) argv.push_back(s.data());
  argv.push_back(nullptr);
  return mqpool::worker_main(static_cast<int>(owned.size()), argv.data());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mqpool: Python's multiprocessing.Pool for C++, over a ZeroMQ broker"};
  app.require_subcommand(1);

  mqpool::BrokerOptions broker_opts;
  auto* broker = app.add_subcommand("broker", "run a broker until SIGINT/SIGTERM");
  broker->add_option("--frontend", broker_opts.frontend, "endpoint clients connect to")
      ->capture_default_str();
  broker->add_option("--backend", broker_opts.backend, "endpoint workers connect to")
      ->capture_default_str();

  // Every argument after `worker` (including --help) goes to worker_main's own parser.
  auto* worker = app.add_subcommand(
      "worker", "run a worker agent for a broker (`mqpool worker --help` for its flags)");
  worker->prefix_command();
  worker->set_help_flag();

  std::string connect;
  bool json = false;
  auto* status = add_not_yet(app, "status", "show the broker's workers, queue and counters");
  status->add_option("--connect", connect, "the broker's client endpoint (tcp://HOST:5555)")
      ->required();
  status->add_flag("--json", json, "print JSON instead of a table");

  int run_processes = 0;
  std::vector<std::string> command;
  auto* run = add_not_yet(app, "run", "run COMMAND once per line of stdin, {} replaced by it");
  run->add_option("--connect", connect, "a broker's client endpoint (default: a local pool)");
  run->add_option("--processes", run_processes, "local worker processes [cores]");
  run->add_option("command", command, "-- COMMAND ARGS... ({} is replaced by the line)");

  std::string key_name;
  auto* keygen = add_not_yet(app, "keygen", "write a CurveZMQ key pair NAME.key and NAME.pub");
  keygen->add_option("name", key_name, "base name of the key files")->required();

  mqpool::cli::BenchOptions bench_opts;
  auto* bench = app.add_subcommand("bench", "run the benchmark workloads, one JSON line each");
  mqpool::cli::add_bench_options(*bench, bench_opts);

  CLI11_PARSE(app, argc, argv);
  try {
    if (*broker) return mqpool::run_broker(broker_opts);
    if (*worker) return run_worker(worker->remaining());
    if (*bench) return mqpool::cli::run_bench(bench_opts);
  } catch (const std::exception& e) {
    std::cerr << "mqpool: " << e.what() << '\n';
    return 1;
  }
  return 2;  // unreachable: require_subcommand(1) and the not-yet callbacks exit first
}
