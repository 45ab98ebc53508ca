// A broker's view of its cluster, as `mqpool status` shows it (docs/STATUS.md), and the
// header of the broker's STATUS reply. mqpool::broker_status() (mqpool/cluster.hpp) asks for it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mqpool/codec.hpp"

namespace mqpool {

struct WorkerStatus {
  std::string host;
  std::uint32_t pid = 0;  // the agent's
  std::uint32_t executors = 0;
  std::uint32_t busy = 0;  // executors holding a TASK
  std::uint64_t tasks_done = 0;
  std::string current_task;  // the function of its longest-running TASK; "" when idle
  double current_for_s = 0;  // how long that TASK has been running
  double connected_for_s = 0;
  bool draining = false;  // stopping (SIGTERM): finishes what it runs, takes nothing new
  MSGPACK_DEFINE(host, pid, executors, busy, tasks_done, current_task, current_for_s,
                 connected_for_s, draining)
};

struct ClientStatus {
  std::string name;  // "host:pid", from its HELLO
  std::uint64_t queued = 0;
  std::uint64_t in_flight = 0;
  double connected_for_s = 0;
  MSGPACK_DEFINE(name, queued, in_flight, connected_for_s)
};

struct BrokerStatus {
  std::uint64_t broker = 0;
  double uptime_s = 0;
  std::vector<WorkerStatus> workers;
  std::vector<ClientStatus> clients;
  std::uint64_t queued = 0, in_flight = 0, done = 0, failed = 0, retried = 0, malformed = 0,
                duplicates = 0;
  double tasks_per_s = 0;  // over the last 10 s
  MSGPACK_DEFINE(broker, uptime_s, workers, clients, queued, in_flight, done, failed, retried,
                 malformed, duplicates, tasks_per_s)
};

}  // namespace mqpool
