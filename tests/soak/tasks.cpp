#include "tasks.hpp"

#include <algorithm>
#include <chrono>
#include <mqpool/registry.hpp>
#include <stdexcept>
#include <thread>

namespace soak {

std::int64_t square(std::int64_t x) { return x * x; }
std::int64_t affine(std::int64_t a, std::int64_t b) { return a * b + 1; }

// About one input in a hundred: maps of a few hundred inputs usually hold a few.
bool rejected(std::int64_t x) { return x % 97 == 13; }

std::string rejection_message(std::int64_t x) {
  return "soak: rejected input " + std::to_string(x);
}

std::int64_t picky(std::int64_t x) {
  if (rejected(x)) throw std::domain_error(rejection_message(x));
  return 3 * x + 1;
}

std::int64_t picky_input(std::int64_t result) { return (result - 1) / 3; }

std::string reverse(std::string s) {
  std::reverse(s.begin(), s.end());
  return s;
}

std::int64_t nap(std::int64_t ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

std::string payload(std::uint64_t seed, std::size_t n) {
  std::string out(n, '\0');
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& c : out) {  // xorshift: cheap, and every byte value occurs
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x >> 56);
  }
  return out;
}

}  // namespace soak

MQPOOL_TASK_AS(soak::square, "soak.square");
MQPOOL_TASK_AS(soak::affine, "soak.affine");
MQPOOL_TASK_AS(soak::picky, "soak.picky");
MQPOOL_TASK_AS(soak::reverse, "soak.reverse");
MQPOOL_TASK_AS(soak::nap, "soak.nap");
