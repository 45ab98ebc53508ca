// The lanes of a soak run: each a thread that runs one kind of work round after round,
// checking every answer, until the run stops; and the executor killer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "soak.hpp"

namespace soak {

struct Pools {
  Target main;   // no task_timeout: chunked maps, batched apply_async calls
  Target timed;  // a task_timeout: every task alone, and killed when it runs over
};

// Runs `round` until the run stops, pausing at the gate between rounds. A Failure or any
// other exception fails the run.
void run_lane(Soak& s, Lane& lane, const std::function<void()>& round);

// One round of each lane; `rng` is the lane's own.
void map_round(Soak& s, const Pools& p, Lane& lane, std::uint64_t& rng);
void imap_round(Soak& s, const Pools& p, Lane& lane, std::uint64_t& rng);
void apply_round(Soak& s, const Pools& p, Lane& lane, std::uint64_t& rng);
void timed_round(Soak& s, const Pools& p, Lane& lane, std::uint64_t& rng);
// Waits 0.3-1.5 s, then SIGKILLs one executor (a child of one of `agents`) at random.
void kill_round(Soak& s, const std::vector<pid_t>& agents, std::uint64_t& rng);

// A uniform draw from [lo, hi] (splitmix64: each lane has its own cheap state).
std::int64_t draw(std::uint64_t& rng, std::int64_t lo, std::int64_t hi);

}  // namespace soak
