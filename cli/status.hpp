// `mqpool status`: the broker's workers, clients and counters as a table that fits 80
// columns, or as one JSON object (docs/STATUS.md), once or every second.
#pragma once

#include <string>

#include "keygen.hpp"
#include "mqpool/status.hpp"

namespace CLI {
class App;
}

namespace mqpool::cli {

struct StatusOptions {
  std::string connect;         // the broker's client endpoint
  bool json = false;           // one JSON object per line instead of the table
  bool watch = false;          // redraw every second until SIGINT/SIGTERM
  std::string timeout = "5s";  // how long to wait for each answer
  KeyFiles keys;               // CURVE
};

// Adds status's flags to `sub`, writing into `opts`.
void add_status_options(CLI::App& sub, StatusOptions& opts);

// Asks the broker and prints its status on stdout. Returns 0; 1 after one line on
// stderr when an option is invalid or no broker answers (with --watch: the first time;
// later misses are shown in place of the table until it answers again).
int run_status(const StatusOptions& opts);

// The status as one line of JSON (no newline), in docs/STATUS.md's schema.
std::string status_json(const BrokerStatus& s);

// The status as a table of lines of at most 80 columns, each ending in a newline.
// `endpoint` is where it came from.
std::string status_table(const BrokerStatus& s, const std::string& endpoint);

// A duration for people: "0.4s", "42s", "5m12s", "3h07m", "2d05h".
std::string format_duration(double seconds);

}  // namespace mqpool::cli
