// Running a standalone broker (`mqpool broker`).
#pragma once

#include <string>

namespace mqpool {

struct BrokerOptions {
  std::string frontend = "tcp://*:5555";  // clients connect here
  std::string backend = "tcp://*:5556";   // worker agents and executors connect here
};

// Binds both endpoints and serves until SIGINT or SIGTERM. Returns the process exit
// code (0 after a signal, 1 if an endpoint could not be bound). Not thread-safe: call
// it from main().
int run_broker(const BrokerOptions& options);

}  // namespace mqpool
