// The library's logger ("mqpool"), level from MQPOOL_LOG_LEVEL (default: warn).
#pragma once

#include <spdlog/spdlog.h>

#include <optional>
#include <string>
#include <string_view>

namespace mqpool::detail {

// The level names that --log-level and MQPOOL_LOG_LEVEL accept, for messages.
inline constexpr std::string_view kLogLevels = "trace, debug, info, warn, error, off";

// The logger, made on first use at MQPOOL_LOG_LEVEL's level; an unknown value there
// leaves it at warn and says so once (a library cannot refuse to start). Thread-safe.
// Its lines' time is formatted without localtime, so that a forked child can log
// (fork_clean.hpp); a child must not be the one to make it (fork_clean() makes it).
spdlog::logger& log();

// The level called `name` (one of kLogLevels), or nullopt. Thread-safe.
std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name);

// Sets the level to `level`. Throws std::invalid_argument naming it and the valid
// levels when it is not one of them. Thread-safe.
void set_log_level(const std::string& level);

// For a command's --log-level: sets the level from `flag` when it is not empty, else
// from MQPOOL_LOG_LEVEL when that is set. Throws std::invalid_argument ("--log-level
// loud: ..." or "MQPOOL_LOG_LEVEL=loud: ...") listing the valid levels. Thread-safe.
void configure_log_level(const std::string& flag);

}  // namespace mqpool::detail
