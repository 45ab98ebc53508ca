// Calls a program makes on a cluster beside submitting work.
#pragma once

#include <chrono>
#include <string>

#include "mqpool/status.hpp"

namespace mqpool {

// Asks the broker whose client endpoint is `endpoint` for its status. Throws
// ConnectionError naming the endpoint when no broker answers within `timeout` (or the
// endpoint is a broker's worker endpoint). Thread-safe.
BrokerStatus broker_status(const std::string& endpoint, std::chrono::milliseconds timeout);

}  // namespace mqpool
