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

#include <string>
#include <tuple>
#include <vector>

#include "mqpool/registry.hpp"

namespace mqpool {

// The built-in task "mqpool.exec" that every worker has: runs argv (PATH is searched)
// and returns {exit code, standard output, standard error}; the exit code is 128 + N
// when signal N ended the command, 127 when it could not be started.
inline const Remote<std::tuple<int, std::string, std::string>(std::vector<std::string>)> exec_task{
    "mqpool.exec"};

}  // namespace mqpool
