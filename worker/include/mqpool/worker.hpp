// Worker programs: `int main(int argc, char** argv) { return mqpool::worker_main(argc, argv); }`
#pragma once

namespace mqpool {

// Runs a worker agent with the flags of `mqpool worker` (--connect, --processes,
// --load, --maxtasksperchild, --log-level); tasks are the ones linked into this program
// plus those of the --load libraries. Returns the process exit code. Call from main(),
// before starting any thread (the agent forks).
int worker_main(int argc, char** argv);

}  // namespace mqpool
