// Sizes as a command line gives them: "64M", "1000", "2K", "1G" (bytes; the suffixes are
// powers of 1024).
#pragma once

#include <cstdint>
#include <string_view>

namespace mqpool::detail {

// The number of bytes `text` names, from 1 to 1T. Throws std::invalid_argument whose
// message starts with `option` ("--max-output 'x' is not a size: ...").
std::uint64_t parse_size_option(std::string_view option, std::string_view text);

// The smallest ZMQ_MAXMSGSIZE a pool works with: room for every control message.
inline constexpr std::int64_t kMinMaxMessage = std::int64_t{64} << 10;
// Throws std::invalid_argument, naming `option`, unless kMinMaxMessage <= bytes <= 1T.
void check_max_message(std::string_view option, std::int64_t bytes);
// A --max-message value: parse_size_option, then check_max_message.
std::int64_t parse_max_message_option(std::string_view option, std::string_view text);

}  // namespace mqpool::detail
