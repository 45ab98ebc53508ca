// Options for Pool and its calls (docs/API.md: aggregates, fields in this order).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mqpool/errors.hpp"

namespace mqpool {

// Every field has a default member initializer, so that designated initializers that
// name only some fields compile cleanly under -Wextra (GCC's missing-field-initializers).
struct PoolOptions {
  int processes = 0;         // local worker processes; 0 = hardware_concurrency()
  std::string connect{};     // empty: local pool with an embedded broker; else broker endpoint
  int maxtasksperchild = 0;  // replace a local worker process after this many chunks; 0 = never
  std::function<void()> initializer{};        // run once in each local worker process
  std::chrono::milliseconds task_timeout{0};  // per-task limit; 0 = none
  int max_retries = 2;  // dispatches after a worker death before WorkerLostError
  // Beyond the fields of Python's Pool: Paranoid Pirate timing. A worker process silent for
  // interval * liveness (stopped, hung, its host gone) is lost; its tasks are retried.
  std::chrono::milliseconds heartbeat_interval{1000};
  int heartbeat_liveness = 3;
  // Cluster pools: how long the constructor waits for the broker before ConnectionError.
  std::chrono::milliseconds connect_timeout{10000};
  // Cluster pools: a broker lost for longer than this fails the outstanding tasks with
  // ConnectionError; one back sooner gets every task without an outcome again.
  std::chrono::milliseconds reconnect_timeout{60000};
  // Cluster pools with CURVE (docs/SECURITY.md): this client's secret key file (`mqpool
  // keygen NAME` writes NAME.key) and the broker's public key file; both or neither.
  std::string curve_secret_file{};
  std::string broker_key_file{};
  // The largest frame (one chunk's arguments or outcomes) this pool's sockets take from
  // a peer, in bytes (ZMQ_MAXMSGSIZE; 64 KiB to 1 TiB). The broker's default is the same.
  std::int64_t max_message = std::int64_t{256} << 20;
  // Local pools: a chunk's arguments or results of at least this many bytes travel
  // through shared memory (a memfd both processes map) instead of being copied through
  // sockets; 0 = never. Cluster pools ignore it: across hosts everything travels inline.
  std::int64_t shared_memory_threshold = std::int64_t{2} << 20;
};

template <class R>
struct Callbacks {  // for apply_async
  std::function<void(const R&)> callback{};
  std::function<void(const Error&)> error_callback{};
};
template <>
struct Callbacks<void> {
  std::function<void()> callback{};
  std::function<void(const Error&)> error_callback{};
};

template <class R>
struct MapOptions {   // for map_async / starmap_async
  int chunksize = 0;  // 0 = automatic; < 0: std::invalid_argument
  std::function<void(const std::vector<R>&)> callback{};
  std::function<void(const Error&)> error_callback{};
};

}  // namespace mqpool

namespace mqpool {
template <>
struct MapOptions<void> {  // map of a void function: the callback says "all done"
  int chunksize = 0;
  std::function<void()> callback{};
  std::function<void(const Error&)> error_callback{};
};
}  // namespace mqpool
