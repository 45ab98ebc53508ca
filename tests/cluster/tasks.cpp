// The cluster test's task library, loaded by `mqpool worker --load libmqpool_cluster_tasks.so`.
// cluster.work({i, ms}) burns `ms` milliseconds of this thread's CPU and answers
// {i, i * i, hostname, pid}: the client checks the value and learns which host (each
// worker host of the test has its own UTS namespace, so its own hostname) served it.
#include "tasks.hpp"

#include <time.h>
#include <unistd.h>

#include <climits>

namespace {

std::int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string host_name() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

cluster_test::WorkResult cluster_work(cluster_test::WorkArgs args) {
  const auto [i, ms] = args;
  const std::int64_t end = thread_cpu_ns() + std::int64_t{ms} * 1'000'000;
  volatile std::uint64_t sink = 0;
  while (thread_cpu_ns() < end)
    for (int k = 0; k < 1000; ++k) sink = sink * 6364136223846793005ULL + 1442695040888963407ULL;
  return {i, i * i, host_name(), static_cast<std::int64_t>(getpid())};
}

}  // namespace

MQPOOL_TASK_AS(cluster_work, "cluster.work");
