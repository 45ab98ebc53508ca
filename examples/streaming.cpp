// streaming: imap over 5 million lazily generated inputs, consuming results as they
// arrive. Neither the inputs nor the results are ever all in memory: imap reads its
// input only as results come back, so the peak memory printed at the end stays small.
//
//   build/examples/streaming
#include <cstdint>
#include <fstream>
#include <iostream>
#include <mqpool/mqpool.hpp>
#include <ranges>
#include <string>

namespace {

// The task: the number of Collatz steps from n down to 1.
int collatz_steps(std::int64_t n) {
  int steps = 0;
  for (; n != 1; ++steps) n = n % 2 ? 3 * n + 1 : n / 2;
  return steps;
}

// This process's peak resident memory, as the kernel reports it (VmHWM in /proc).
std::string peak_memory() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) return line.substr(line.find_first_not_of(" \t", 6));
  }
  return "unknown";
}

}  // namespace

MQPOOL_TASK(collatz_steps);

int main() {
  constexpr std::int64_t kCount = 5'000'000;
  // A lazy input: nothing is generated until imap asks for it.
  auto starts = std::views::iota(std::int64_t{0}, kCount) |
                std::views::transform([](std::int64_t i) { return i + 1; });

  mqpool::Pool pool;
  std::int64_t done = 0, longest_start = 1;
  int longest = 0;
  // Results come back in input order. chunksize groups 1000 inputs per message: tiny
  // tasks like this one would spend their time in messaging with chunksize 1.
  for (int steps : pool.imap(collatz_steps, starts, 1000)) {
    ++done;  // the result of input `done`, i.e. of n = done
    if (steps > longest) {
      longest = steps;
      longest_start = done;
    }
    if (done % 1'000'000 == 0) {
      std::cout << done << " done; longest so far: " << longest
                << " steps from n = " << longest_start << "; peak memory " << peak_memory() << '\n';
    }
  }

  std::cout << "longest below " << kCount + 1 << ": " << longest
            << " steps from n = " << longest_start << '\n';
  // Check the streamed answer against a direct computation of the winner.
  if (done != kCount || collatz_steps(longest_start) != longest) {
    std::cerr << "wrong result: " << done << " results\n";
    return 1;
  }
  return 0;
}
