// `mqpool run`'s command lines: GNU parallel's replacement strings in an argv template,
// and the shell-quoted form that --dry-run and the joblog print.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mqpool::cli {

// The argv of job number `seq` (1, 2, ...) for the input item `item`. In every word of
// `words`: {} the item, {.} without its extension, {/} its basename, {//} its dirname
// ("." when it has none), {/.} the basename without extension, {#} `seq`. When no word
// holds a replacement string, the item is appended as the last argument (as GNU
// parallel and xargs do). Anything else in braces is left as it is.
std::vector<std::string> expand_command(const std::vector<std::string>& words,
                                        std::string_view item, std::uint64_t seq);

// The words as one line a POSIX shell would split back into them: a word with anything
// but [A-Za-z0-9_@%+=:,./-] is put in single quotes ('' for an empty word).
std::string shell_line(const std::vector<std::string>& words);

}  // namespace mqpool::cli
