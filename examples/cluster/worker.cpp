// The cluster example's worker: your own worker binary, with its tasks linked in
// (tasks.cpp is compiled into it). It takes the flags of `mqpool worker`:
//
//   mqpool-example-worker --connect tcp://BROKER:5556 [--processes N] [--load LIB.so]...
//
// That is all a worker program needs: worker_main parses the flags, forks the executor
// processes and serves the broker until SIGINT or SIGTERM.
#include <mqpool/worker.hpp>

int main(int argc, char** argv) { return mqpool::worker_main(argc, argv); }
