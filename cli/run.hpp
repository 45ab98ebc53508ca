// `mqpool run [options] -- COMMAND ARGS...`: the pool from the shell. One job per input
// line (or NUL-separated item), run through the built-in task mqpool.exec_job on a local
// pool or a cluster, outputs printed whole, in input order by default (docs/RUN.md).
#pragma once

#include <string>
#include <vector>

#include "keygen.hpp"

namespace CLI {
class App;
}

namespace mqpool::cli {

struct RunOptions {
  std::string connect;               // a broker's client endpoint; empty: a local pool
  KeyFiles keys;                     // CURVE, with --connect
  int processes = 0;                 // a local pool's executors; 0 = the cores
  std::string timeout;               // per job ("30s", "2m"); empty = none
  int retries = 0;                   // reruns of a job that exits non-zero
  std::string halt = "never";        // never | now,fail=N | soon,fail=N
  std::string joblog;                // file of one row per finished job
  bool resume = false;               // skip the jobs --joblog holds
  bool dry_run = false;              // print the commands, run nothing
  bool unordered = false;            // print outputs as jobs finish
  bool null = false;                 // items end with NUL, not newline
  std::string arg_file;              // items from this file, not stdin
  std::string max_output = "64M";    // bound on each job's stdout and stderr
  std::string max_message = "256M";  // PoolOptions::max_message
  bool bar = false, no_bar = false;
  std::vector<std::string> command;
  bool command_after_dashes = false;  // it came after "--": it may start with '-'
};

// run's exit status for an invalid option or a pool that cannot start (GNU parallel's).
constexpr int kRunSetupError = 255;

// Adds run's flags and its COMMAND to `sub`, writing into `opts`.
void add_run_options(CLI::App& sub, RunOptions& opts);

// Runs the jobs. Returns 0 when every job succeeded, else the number of failed jobs
// (at most 101), 128 + N after signal N (SIGINT, SIGTERM) stopped the run, and 255
// after one line on stderr for an invalid option or a pool that cannot start.
int run_jobs(const RunOptions& opts);

}  // namespace mqpool::cli
