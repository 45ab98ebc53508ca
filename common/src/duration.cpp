#include "common/duration.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace mqpool::detail {

std::chrono::milliseconds parse_duration(std::string_view text) {
  // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict on the chain of
  // operator+ that would say the same (GCC bug 105329).
  const auto bad = [&](std::string_view why) {
    std::string m = "'";
    m.append(text).append("' ").append(why).append(
        "; use e.g. 500ms, 10s, 2m or a number of seconds");
    return std::invalid_argument(m);
  };
  double value = 0;
  // from_chars takes no sign or space of its own accord, so "-1" and " 1" end here.
  const auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value, std::chars_format::fixed);
  if (ec != std::errc() || text.empty() || text.front() == '-') throw bad("is not a duration");
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  double ms_per_unit = 0;
  if (unit.empty() || unit == "s")
    ms_per_unit = 1000;
  else if (unit == "ms")
    ms_per_unit = 1;
  else if (unit == "m")
    ms_per_unit = 60'000;
  else if (unit == "h")
    ms_per_unit = 3'600'000;
  else
    throw bad("has an unknown unit (ms, s, m or h)");
  const double ms = std::round(value * ms_per_unit);
  if (!std::isfinite(ms) || ms > 365.0 * 24 * 3'600'000) throw bad("is longer than a year");
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

std::chrono::milliseconds parse_duration_option(std::string_view option, std::string_view text) {
  try {
    return parse_duration(text);
  } catch (const std::invalid_argument& e) {
    std::string m(option);
    m.append(" ").append(e.what());
    throw std::invalid_argument(m);
  }
}

}  // namespace mqpool::detail
