// Worker programs: `int main(int argc, char** argv) { return mqpool::worker_main(argc, argv); }`
#pragma once

namespace mqpool {

// Runs a worker agent with the flags of `mqpool worker` (--connect, --processes,
// --load, --maxtasksperchild, --grace, --log-level); tasks are the ones linked into this
// program plus those of the --load libraries. Returns the process exit code: the
// agent's, 1 after one line on stderr for an invalid value or a library that does not
// load, 2 for a command line that does not parse. Call from main(), before starting
// any thread (the agent forks).
int worker_main(int argc, char** argv);

}  // namespace mqpool

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "mqpool/registry.hpp"

namespace mqpool {

// The built-in task "mqpool.exec" that every worker has: runs argv (PATH is searched)
// with an empty standard input and returns {exit code, standard output, standard
// error}, each output cut at 64 MiB (a line at the end of standard error then says
// so); the exit code is 128 + N when signal N ended the command, 127 when it could not
// be started. A killed task leaves nothing of its command running (docs/API.md §10).
inline const Remote<std::tuple<int, std::string, std::string>(std::vector<std::string>)> exec_task{
    "mqpool.exec"};

// What the built-in task "mqpool.exec_job" returns, in this order:
using ExecJobResult = std::tuple<
    // exit_code: the command's own exit status; 128 + N if signal N ended it; 127 if it
    // could not be started
    int,
    // signal: N if signal N ended the command, else 0
    int,
    // out: its standard output, at most max_output bytes of it
    std::string,
    // err: its standard error, at most max_output bytes of it, then one line per output
    // that was cut ("mqpool: standard output cut at N bytes (M bytes in all)"), or the
    // reason it could not be started
    std::string,
    // host: the host name of the worker that ran it
    std::string,
    // start: when it started, in seconds since the Unix epoch (to the microsecond)
    double,
    // runtime: how long it ran, in seconds
    double>;

// The built-in task "mqpool.exec_job" that every worker has, for `mqpool run`: as
// exec_task, but `stdin_data` is written to the command's standard input (which is then
// closed; empty: an empty standard input), `max_output` bounds each output (0: 64 MiB),
// and the result says more (ExecJobResult).
inline const Remote<ExecJobResult(std::vector<std::string> argv, std::string stdin_data,
                                  std::uint64_t max_output)>
    exec_job_task{"mqpool.exec_job"};

}  // namespace mqpool
