// Running a standalone broker (`mqpool broker`).
#pragma once

#include <cstdint>
#include <string>

namespace mqpool {

struct BrokerOptions {
  std::string frontend = "tcp://*:5555";  // clients connect here
  std::string backend = "tcp://*:5556";   // worker agents and executors connect here
  std::string log_level{};                // trace ... off; empty: MQPOOL_LOG_LEVEL, else warn
  // CURVE (docs/SECURITY.md): this broker's secret key file and the directory of the
  // public keys it admits; both or neither.
  std::string curve_secret_file{};
  std::string authorized_keys_dir{};
  bool insecure = false;  // bound beyond loopback without CURVE, on purpose: no warning
  // The largest frame it takes from a peer, in bytes (ZMQ_MAXMSGSIZE; 64 KiB to 1 TiB):
  // a peer that declares more is disconnected before any memory is taken for it.
  std::int64_t max_message = std::int64_t{256} << 20;
};

// Checks the options, binds both endpoints, prints "mqpool broker: clients on EP,
// workers on EP" on stdout and serves until SIGINT or SIGTERM. Returns the process exit
// code: 0 after a signal; 1, after one line on stderr naming the option, if an endpoint,
// the log level or a key is invalid or an endpoint cannot be bound. SIGHUP reads the
// authorized keys again. Not thread-safe: call it from main().
int run_broker(const BrokerOptions& options);

}  // namespace mqpool
