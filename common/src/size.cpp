#include "common/size.hpp"

#include <charconv>
#include <stdexcept>
#include <string>

namespace mqpool::detail {

namespace {
constexpr int kMaxShift = 40;  // 1T
}

std::uint64_t parse_size_option(std::string_view option, std::string_view text) {
  std::uint64_t n = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string_view unit(p, static_cast<std::size_t>(text.data() + text.size() - p));
  const int shift = unit.empty() ? 0 : unit == "K" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : -1;
  if (ec != std::errc() || shift < 0 || n == 0 || n > (std::uint64_t{1} << (kMaxShift - shift)))
    throw std::invalid_argument(std::string(option) + " '" + std::string(text) +
                                "' is not a size: a number of bytes from 1 to 1T, with an "
                                "optional K, M or G");
  return n << shift;
}

void check_max_message(std::string_view option, std::int64_t bytes) {
  if (bytes < kMinMaxMessage || bytes > (std::int64_t{1} << kMaxShift))
    throw std::invalid_argument(std::string(option) + " must be from 64K to 1T, got " +
                                std::to_string(bytes) + " bytes");
}

std::int64_t parse_max_message_option(std::string_view option, std::string_view text) {
  const auto bytes = static_cast<std::int64_t>(parse_size_option(option, text));
  check_max_message(option, bytes);
  return bytes;
}

}  // namespace mqpool::detail
