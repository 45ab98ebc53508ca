#include "run_command.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

namespace mqpool::cli {

namespace {

// GNU parallel's definitions: the extension is a dot in the basename (not its first
// character) and what follows it; a trailing slash is part of the name.
std::string_view basename_of(std::string_view s) {
  const auto slash = s.rfind('/');
  return slash == std::string_view::npos ? s : s.substr(slash + 1);
}

std::string_view dirname_of(std::string_view s) {
  const auto slash = s.rfind('/');
  if (slash == std::string_view::npos) return ".";
  return slash == 0 ? s.substr(0, 1) : s.substr(0, slash);
}

std::string_view without_extension(std::string_view s) {
  const auto base = s.size() - basename_of(s).size();
  const auto dot = s.rfind('.');
  return dot == std::string_view::npos || dot <= base ? s : s.substr(0, dot);
}

// Longest first, so that "{/.}" is not read as "{/}" followed by something.
constexpr std::array<std::string_view, 6> kStrings = {"{//}", "{/.}", "{/}", "{.}", "{#}", "{}"};

std::string value_of(std::string_view token, std::string_view item, std::uint64_t seq) {
  if (token == "{}") return std::string(item);
  if (token == "{.}") return std::string(without_extension(item));
  if (token == "{/}") return std::string(basename_of(item));
  if (token == "{//}") return std::string(dirname_of(item));
  if (token == "{/.}") return std::string(without_extension(basename_of(item)));
  return std::to_string(seq);  // {#}
}

// The replacement string at word[i], or an empty view.
std::string_view token_at(std::string_view word, std::size_t i) {
  for (auto t : kStrings)
    if (word.substr(i, t.size()) == t) return t;
  return {};
}

}  // namespace

std::vector<std::string> expand_command(const std::vector<std::string>& words,
                                        std::string_view item, std::uint64_t seq) {
  std::vector<std::string> argv;
  argv.reserve(words.size() + 1);
  bool replaced = false;
  for (const auto& w : words) {
    std::string out;
    std::size_t i = 0;
    while (i < w.size()) {
      const auto t = w[i] == '{' ? token_at(w, i) : std::string_view{};
      if (t.empty()) {
        out += w[i++];
      } else {
        out += value_of(t, item, seq);
        i += t.size();
        replaced = true;
      }
    }
    argv.push_back(std::move(out));
  }
  if (!replaced) argv.emplace_back(item);
  return argv;
}

std::string shell_line(const std::vector<std::string>& words) {
  std::string line;
  for (const auto& w : words) {
    if (!line.empty()) line += ' ';
    const bool plain = !w.empty() && std::ranges::all_of(w, [](unsigned char c) {
      return std::isalnum(c) ||
             std::string_view("_@%+=:,./-").find(static_cast<char>(c)) != std::string_view::npos;
    });
    if (plain) {
      line += w;
      continue;
    }
    line += '\'';
    for (char c : w) line += c == '\'' ? std::string("'\\''") : std::string(1, c);
    line += '\'';
  }
  return line;
}

}  // namespace mqpool::cli
