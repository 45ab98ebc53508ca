// A program that registers two functions under one name. docs/API.md: "Registering two
// functions under one name is an error at start-up with a clear message." Run by
// test_registry.cpp, which expects a non-zero exit and the name in the output.
#include <cstdint>
#include <cstdio>
#include <mqpool/mqpool.hpp>

namespace {
std::int64_t first(std::int64_t x) { return x; }
std::int64_t second(std::int64_t x) { return -x; }
}  // namespace

MQPOOL_TASK_AS(first, "itest.duplicate");
MQPOOL_TASK_AS(second, "itest.duplicate");

int main() {
  mqpool::Pool pool(1);
  const auto v = pool.apply(first, std::int64_t{1});
  std::printf("started and ran a task (result %lld) despite a duplicate name\n",
              static_cast<long long>(v));
  return 0;
}
