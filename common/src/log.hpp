// The library's logger ("mqpool"), level from MQPOOL_LOG_LEVEL (default: warn).
#pragma once

#include <spdlog/spdlog.h>

namespace mqpool::detail {

spdlog::logger& log();
// Overrides the level: "trace", "debug", "info", "warn", "error", "off".
void set_log_level(const std::string& level);

}  // namespace mqpool::detail
