// The cluster example's tasks, built as a shared library that any worker can load:
//
//   mqpool worker --connect tcp://BROKER:5556 --load libmqpool_example_tasks.so
//
// The same file is compiled into the example worker binary (worker.cpp), which then
// needs no --load. Clients call these by name through mqpool::Remote handles (client.cpp).
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <mqpool/mqpool.hpp>
#include <string>
#include <tuple>

namespace {

// Keeps this thread busy for `ms` milliseconds of CPU time (not wall time, so that a
// crowded machine makes tasks slower rather than cheaper).
void burn_cpu(std::int64_t ms) {
  const auto cpu_ns = [] {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return std::int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
  };
  const std::int64_t end = cpu_ns() + ms * 1'000'000;
  volatile std::uint64_t sink = 0;
  while (cpu_ns() < end) {
    for (int i = 0; i < 1000; ++i) sink = sink + i;
  }
}

std::string hostname() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

}  // namespace

std::int64_t square(std::int64_t x) { return x * x; }

// x * x, after `ms` milliseconds of CPU work: a task worth sending to another host.
std::int64_t slow_square(std::int64_t x, std::int64_t ms) {
  burn_cpu(ms);
  return x * x;
}

// As slow_square, and says where it ran: {x * x, host name, pid of the worker agent}.
// An executor is a child process of its agent (`mqpool worker` or your worker binary),
// so getppid() tells the agents on one host apart.
std::tuple<std::int64_t, std::string, std::int64_t> where(std::int64_t x, std::int64_t ms) {
  return {slow_square(x, ms), hostname(), std::int64_t{getppid()}};
}

// Registered under their own names: "square", "slow_square", "where".
MQPOOL_TASK(square);
MQPOOL_TASK(slow_square);
MQPOOL_TASK(where);
