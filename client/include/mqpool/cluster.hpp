// Calls a program makes on a cluster beside submitting work.
#pragma once

#include <chrono>
#include <string>

#include "mqpool/status.hpp"

namespace mqpool {

// Asks the broker whose client endpoint is `endpoint` for its status. Throws
// ConnectionError naming the endpoint when no broker answers within `timeout`, the
// endpoint is a broker's worker endpoint, or the broker refuses the key; with CURVE
// (both key files given, as PoolOptions::curve_secret_file and broker_key_file),
// std::invalid_argument when a file does not hold a key. Thread-safe.
BrokerStatus broker_status(const std::string& endpoint, std::chrono::milliseconds timeout,
                           const std::string& curve_secret_file = {},
                           const std::string& broker_key_file = {});

}  // namespace mqpool
