// This process and its machine: names as other hosts see them, and the cores.
#pragma once

#include <string>

namespace mqpool::detail {

// This machine's host name; "localhost" if it has none.
const std::string& hostname();
// "host:pid" of the calling process (computed per call: a forked child has a new pid).
std::string host_pid();
// Worker processes when none are asked for: one per core (hardware_concurrency), at
// least 1 when the core count is unknown.
int default_processes();

}  // namespace mqpool::detail
