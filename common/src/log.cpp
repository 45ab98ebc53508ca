#include "log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <array>
#include <cstdlib>
#include <stdexcept>
#include <utility>

namespace mqpool::detail {

namespace {

std::string not_a_level(std::string_view what) {
  return std::string(what) + ": not a log level; use one of " + std::string(kLogLevels);
}

// MQPOOL_LOG_LEVEL, or nullptr when it is unset or empty (as shells clear a variable).
const char* log_level_env() {
  const char* env = std::getenv("MQPOOL_LOG_LEVEL");
  return env != nullptr && *env != '\0' ? env : nullptr;
}

}  // namespace

std::optional<spdlog::level::level_enum> parse_log_level(std::string_view name) {
  // Our own table: spdlog's from_str() maps every unknown name to "off", which would
  // silence a typo instead of reporting it.
  static constexpr std::array<std::pair<std::string_view, spdlog::level::level_enum>, 6> kLevels{{
      {"trace", spdlog::level::trace},
      {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},
      {"off", spdlog::level::off},
  }};
  for (const auto& [n, level] : kLevels)
    if (n == name) return level;
  return std::nullopt;
}

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::stderr_color_mt("mqpool");
    l->set_pattern("[%H:%M:%S.%e] [mqpool %P] [%^%l%$] %v");
    l->set_level(spdlog::level::warn);
    if (const char* env = log_level_env()) {
      if (auto level = parse_log_level(env))
        l->set_level(*level);
      else
        l->warn("{}; logging at warn", not_a_level(std::string("MQPOOL_LOG_LEVEL=") + env));
    }
    return l;
  }();
  return *logger;
}

void set_log_level(const std::string& level) {
  const auto parsed = parse_log_level(level);
  if (!parsed) throw std::invalid_argument(not_a_level("'" + level + "'"));
  log().set_level(*parsed);
}

void configure_log_level(const std::string& flag) {
  if (!flag.empty()) {
    const auto level = parse_log_level(flag);
    if (!level) throw std::invalid_argument(not_a_level("--log-level " + flag));
    log().set_level(*level);
    return;
  }
  if (const char* env = log_level_env()) {
    const auto level = parse_log_level(env);
    if (!level) throw std::invalid_argument(not_a_level(std::string("MQPOOL_LOG_LEVEL=") + env));
    log().set_level(*level);
  }
}

}  // namespace mqpool::detail
