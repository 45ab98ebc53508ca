#include "common/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <memory>
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

// Our lines' time of day, "HH:MM:SS.mmm" in local time, computed without localtime_r.
// glibc's localtime takes its tz lock, which fork() does not reset in the child: an agent
// or executor forked while another thread of the program was inside localtime would
// deadlock on its first log line. spdlog calls localtime only for its built-in time
// flags, never for a custom flag, so this one needs only the offset from UTC, read once
// in the parent when the logger is made (fork_clean() makes it before forking). A
// daylight-saving change while the program runs shifts our times by that change.
class LocalClockFlag final : public spdlog::custom_flag_formatter {
 public:
  explicit LocalClockFlag(long long utc_offset_ms) : offset_ms_(utc_offset_ms) {}

  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    constexpr long long kDayMs = 24LL * 60 * 60 * 1000;
    const long long ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() +
        offset_ms_;
    const long long t = (ms % kDayMs + kDayMs) % kDayMs;  // before 1970 too
    char text[] = "00:00:00.000";
    put_digits(text, 2, t / 3'600'000);
    put_digits(text + 3, 2, t / 60'000 % 60);
    put_digits(text + 6, 2, t / 1000 % 60);
    put_digits(text + 9, 3, t % 1000);
    dest.append(text, text + sizeof text - 1);
  }

  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<LocalClockFlag>(offset_ms_);
  }

 private:
  // Writes `value` as `width` decimal digits at `out`.
  static void put_digits(char* out, int width, long long value) {
    for (int i = width - 1; i >= 0; --i, value /= 10) out[i] = static_cast<char>('0' + value % 10);
  }

  long long offset_ms_;
};

// The local time's offset from UTC now, in milliseconds (0 if it cannot be known).
long long utc_offset_ms() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  if (localtime_r(&now, &local) == nullptr) return 0;
  return static_cast<long long>(local.tm_gmtoff) * 1000;
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
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<LocalClockFlag>('*', utc_offset_ms())
        .set_pattern("[%*] [mqpool %P] [%^%l%$] %v");
    l->set_formatter(std::move(formatter));
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
