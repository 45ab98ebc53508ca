// Text for a terminal and for JSON: UTF-8 checking, control characters made harmless,
// cells cut to a column width.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mqpool::cli {

// The length of the well-formed UTF-8 sequence at s[i] (1 for ASCII), or 0 when the
// bytes there are not one (stray continuation byte, truncated or overlong sequence,
// surrogate, above U+10FFFF). Requires i < s.size().
std::size_t utf8_length(std::string_view s, std::size_t i);

// `s` safe to print in a table: control characters (which could move the cursor or
// recolour the terminal: names come from the network) and bytes that are not UTF-8
// each become '?'.
std::string printable(std::string_view s);

// Characters (code points) in a printable() string.
std::size_t display_width(std::string_view s);

// A printable() string cut to at most `width` characters, its last one '~' when cut.
std::string cut(std::string_view s, std::size_t width);

// `s` cut to `width` and padded with spaces to exactly `width`, left- or right-aligned.
std::string pad(std::string_view s, std::size_t width, bool right);

}  // namespace mqpool::cli
