// Checking ZeroMQ endpoints given on a command line before they reach bind or connect,
// which accept some nonsense (a port above 65535 binds another port) and report the
// rest only as "Invalid argument".
#pragma once

#include <string>
#include <string_view>

namespace mqpool::detail {

enum class EndpointUse {
  bind,     // may use `*` for the host (all interfaces) and for the port (any free one)
  connect,  // names one peer: a real host and port
};

// Why `endpoint` cannot be used that way, as a phrase ("the port 99999 is above
// 65535"); empty when it can: tcp://HOST:PORT with PORT 1..65535 (or `*` to bind), or
// ipc://PATH. Does not resolve host names. Thread-safe.
std::string endpoint_problem(std::string_view endpoint, EndpointUse use);

// Throws std::invalid_argument("OPTION ENDPOINT: PROBLEM") when endpoint_problem() is
// not empty. Thread-safe.
void check_endpoint(std::string_view option, std::string_view endpoint, EndpointUse use);

}  // namespace mqpool::detail

namespace mqpool::detail {

// True if only this host can reach `endpoint`: ipc://, inproc://, or tcp:// on
// localhost, 127.x.y.z, [::1] or the interface lo.
bool is_loopback(std::string_view endpoint);

}  // namespace mqpool::detail
