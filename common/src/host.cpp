#include "common/host.hpp"

#include <unistd.h>

#include <algorithm>
#include <thread>

namespace mqpool::detail {

const std::string& hostname() {
  static const std::string name = [] {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return std::string("localhost");
    return std::string(buf);
  }();
  return name;
}

std::string host_pid() { return hostname() + ":" + std::to_string(getpid()); }

int default_processes() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace mqpool::detail
