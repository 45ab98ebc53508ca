// Names for this process as other hosts see it.
#pragma once

#include <string>

namespace mqpool::detail {

// This machine's host name; "localhost" if it has none.
const std::string& hostname();
// "host:pid" of the calling process (computed per call: a forked child has a new pid).
std::string host_pid();

}  // namespace mqpool::detail
