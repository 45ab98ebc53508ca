// Durations as a command line gives them: "500ms", "10s", "2m", "1h", or a plain
// number of seconds ("1.5" = 1500 ms).
#pragma once

#include <chrono>
#include <string_view>

namespace mqpool::detail {

// The duration `text` names, rounded to whole milliseconds. Throws
// std::invalid_argument for anything else (a negative value, a unit other than ms, s,
// m, h, more than a year). Thread-safe.
std::chrono::milliseconds parse_duration(std::string_view text);
// The same for the value of a command-line option: the exception's message starts with
// the option's name ("--grace '10 s' is not a duration; ...").
std::chrono::milliseconds parse_duration_option(std::string_view option, std::string_view text);

}  // namespace mqpool::detail
