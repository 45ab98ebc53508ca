// quickstart: count the primes below 10 million, first in a serial loop, then with a
// pool that uses every core, and print the speed-up.
//
//   build/examples/quickstart
#include <chrono>
#include <cstdint>
#include <iostream>
#include <mqpool/mqpool.hpp>
#include <numeric>
#include <thread>
#include <vector>

namespace {

constexpr std::int64_t kLimit = 10'000'000;
constexpr std::int64_t kBlock = 100'000;  // numbers per task: 100 tasks in all

bool is_prime(std::int64_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (std::int64_t d = 3; d * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

// The task: how many primes lie in block number `block`, [block * kBlock, (block + 1) * kBlock).
std::int64_t count_primes_in_block(std::int64_t block) {
  std::int64_t count = 0;
  for (std::int64_t n = block * kBlock; n < (block + 1) * kBlock; ++n) count += is_prime(n);
  return count;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// Register the task by name, so that the pool's worker processes can run it.
MQPOOL_TASK(count_primes_in_block);

int main() {
  std::vector<std::int64_t> blocks(kLimit / kBlock);
  std::iota(blocks.begin(), blocks.end(), std::int64_t{0});

  // Serial: one core.
  auto t0 = std::chrono::steady_clock::now();
  std::int64_t serial = 0;
  for (std::int64_t b : blocks) serial += count_primes_in_block(b);
  const double serial_s = seconds_since(t0);

  // Parallel: one worker process per core; map keeps the input order. The clock starts
  // after the pool is made: starting the worker processes is a one-time cost.
  mqpool::Pool pool;
  t0 = std::chrono::steady_clock::now();
  const std::vector<std::int64_t> counts = pool.map(count_primes_in_block, blocks);
  const std::int64_t parallel = std::accumulate(counts.begin(), counts.end(), std::int64_t{0});
  const double parallel_s = seconds_since(t0);

  std::cout << "primes below " << kLimit << ": " << parallel << '\n'
            << "serial:   " << serial_s << " s\n"
            << "parallel: " << parallel_s << " s on " << std::thread::hardware_concurrency()
            << " cores\n"
            << "speed-up: " << serial_s / parallel_s << "x\n";
  if (parallel != serial) {
    std::cerr << "mismatch: serial counted " << serial << '\n';
    return 1;
  }
  return 0;
}
