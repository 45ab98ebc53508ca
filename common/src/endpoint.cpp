#include "common/endpoint.hpp"

#include <sys/un.h>

#include <algorithm>
#include <stdexcept>

namespace mqpool::detail {

namespace {

constexpr std::string_view kForms = "use tcp://HOST:PORT or ipc://PATH";

bool all_digits(std::string_view s) {
  return !s.empty() && std::ranges::all_of(s, [](char c) { return c >= '0' && c <= '9'; });
}

std::string tcp_problem(std::string_view rest, EndpointUse use) {
  const auto colon = rest.rfind(':');
  // "[::1]" alone has colons but no port after its closing bracket.
  if (colon == std::string_view::npos || (rest.front() == '[' && rest.find(']') > colon))
    return "no port (tcp://HOST:PORT)";
  const std::string_view host = rest.substr(0, colon);
  const std::string_view port = rest.substr(colon + 1);
  if (host.empty()) return "no host before the port (tcp://HOST:PORT)";
  if (host.find(':') != std::string_view::npos && (host.front() != '[' || host.back() != ']'))
    return "an IPv6 address needs brackets (tcp://[::1]:PORT)";
  if (use == EndpointUse::connect && host == "*")
    return "`*` binds all interfaces; to connect, name the broker's host";
  if (port == "*") {
    if (use == EndpointUse::connect) return "`*` picks a port to bind; to connect, give the port";
    return {};
  }
  if (port.empty()) return "no port after the colon";
  if (!all_digits(port)) return "the port '" + std::string(port) + "' is not a number";
  // Digits only, so a long string is a large number; stop before it overflows.
  if (port.size() > 5 || std::stoi(std::string(port)) > 65535)
    return "the port " + std::string(port) + " is above 65535";
  if (std::stoi(std::string(port)) == 0)
    return use == EndpointUse::bind ? "the port 0 is not a port (`*` picks a free one)"
                                    : "the port 0 is not a port";
  return {};
}

std::string ipc_problem(std::string_view path) {
  if (path.empty()) return "no path after ipc://";
  // The path lives in a sockaddr_un, including its terminating NUL.
  constexpr std::size_t max = sizeof(sockaddr_un{}.sun_path) - 1;
  if (path.size() > max)
    return "the path is " + std::to_string(path.size()) + " bytes long, above the " +
           std::to_string(max) + " a socket path can have";
  return {};
}

}  // namespace

std::string endpoint_problem(std::string_view endpoint, EndpointUse use) {
  const auto sep = endpoint.find("://");
  if (sep == std::string_view::npos) return "not an endpoint (" + std::string(kForms) + ")";
  const std::string_view transport = endpoint.substr(0, sep);
  const std::string_view rest = endpoint.substr(sep + 3);
  if (transport == "tcp")
    return rest.empty() ? "no host and port (tcp://HOST:PORT)" : tcp_problem(rest, use);
  if (transport == "ipc") return ipc_problem(rest);
  return "the transport '" + std::string(transport) + "' is not supported (" + std::string(kForms) +
         ")";
}

void check_endpoint(std::string_view option, std::string_view endpoint, EndpointUse use) {
  const std::string problem = endpoint_problem(endpoint, use);
  if (!problem.empty())
    throw std::invalid_argument(std::string(option) + " " + std::string(endpoint) + ": " + problem);
}

}  // namespace mqpool::detail

namespace mqpool::detail {

bool is_loopback(std::string_view endpoint) {
  if (endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://")) return true;
  if (!endpoint.starts_with("tcp://")) return false;
  std::string_view host = endpoint.substr(6);
  host = host.substr(0, host.rfind(':'));
  return host == "localhost" || host == "lo" || host == "[::1]" || host.starts_with("127.");
}

}  // namespace mqpool::detail
