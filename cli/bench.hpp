// `mqpool bench`: the benchmark's workloads (docs/PERFORMANCE.md), one JSON line each, in the
// format of peers.py. Every workload checks its answers; a wrong one is a failure.
// cluster_apply_async_tiny and cluster_map_tiny start their own `mqpool broker` and
// `mqpool worker` (this executable) on tcp loopback; with --connect they are the plain
// workloads on that cluster (bench.cpp's header comment).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "keygen.hpp"

namespace CLI {
class App;
}

namespace mqpool::cli {

struct BenchOptions {
  int processes = 0;               // 0 = one per core, as Pool(0)
  std::string connect;             // empty: a local pool; else a broker's client endpoint
  KeyFiles keys;                   // CURVE, with --connect
  bool quick = false;              // small sizes: proves every workload runs (CI)
  std::int64_t payload_bytes = 0;  // payload_echo's item size; 0 = the contract's
  std::int64_t shared_memory_threshold = -1;  // -1 = PoolOptions' default
  std::vector<std::string> workloads;         // empty = all
};

// Adds bench's flags and positionals to `sub`, writing into `opts`.
void add_bench_options(CLI::App& sub, BenchOptions& opts);

// Runs the selected workloads and prints one JSON object per line on stdout.
// Returns 0, 1 if a workload failed or computed a wrong answer (message on stderr),
// 2 for a usage error (an unknown workload name).
int run_bench(const BenchOptions& opts);

}  // namespace mqpool::cli
