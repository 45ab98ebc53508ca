// The two modes of the soak test, each run in a process of its own.
#pragma once

#include "run.hpp"

namespace soak {

// A local pool (embedded broker thread, forked agent) and a timed local pool.
int run_local(const Config& cfg);
// A `mqpool broker` and a worker agent (this binary's `worker` role) started here, on
// tcp loopback ports the broker picks, and two pools connected to the broker.
int run_cluster(const Config& cfg);

}  // namespace soak
