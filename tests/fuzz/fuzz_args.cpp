// Fuzz target: an args frame (SUBMIT, TASK: docs/PROTOCOL.md §5) decoded into the
// argument tuples of typical tasks, as the executor runs a chunk (the registry's
// run_chunk, what worker/src/executor.cpp calls). The first byte picks the task and the
// chunk's task count, the rest is the frame. Whatever the bytes, the chunk must answer
// every task: one value each, and failures only of the serialization kind (these tasks
// never throw), in ascending order.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "budget.hpp"
#include "mqpool/registry.hpp"

namespace {

using namespace mqpool::detail;

std::int64_t twice(std::int64_t x) { return 2 * (x / 4); }
std::size_t length(std::string s, std::int64_t) { return s.size(); }
double total(std::vector<double> v) { return std::accumulate(v.begin(), v.end(), 0.0); }
std::string nested(std::tuple<std::int64_t, std::string> t, std::vector<double> v) {
  return std::get<1>(t) + std::to_string(v.size());
}

constexpr RunChunk kTasks[] = {&run_chunk<&twice>, &run_chunk<&length>, &run_chunk<&total>,
                               &run_chunk<&nested>};

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "fuzz_args: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::budget_start();
  if (size == 0) return 0;
  const RunChunk run = kTasks[data[0] % 4];
  const std::uint32_t count = 1 + data[0] / 4;  // 1 .. 64, as chunks of small tasks are
  const char* args = reinterpret_cast<const char*>(data) + 1;
  const std::size_t n = size - 1;

  Reader reader(args, n);
  ChunkOutput out;
  run(reader, count, out, "fuzz");

  std::uint32_t next_row = 0;
  for (const auto& [index, e] : out.errors) {
    if (index < next_row || index >= count) broken("error rows out of order or range");
    if (e.code != mqpool::ErrorCode::serialization) broken("a failure not of decoding");
    next_row = index + 1;
  }
  Reader values(out.values.data(), out.values.size());
  try {
    for (std::uint32_t i = 0; i < count; ++i) (void)values.next();
  } catch (const mqpool::SerializationError&) {
    broken("the values frame does not hold one value per task");
  }
  if (!values.at_end()) broken("the values frame holds more than one value per task");

  // A chunk the executor could read whole, the broker can cut into its tasks (a retry
  // split, object_sizes), at the same boundaries.
  if (out.errors.empty()) {
    try {
      const auto sizes = object_sizes(args, n, count);
      if (std::accumulate(sizes.begin(), sizes.end(), std::size_t{0}) != reader.offset())
        broken("the split and the executor disagree on where the tasks end");
    } catch (const mqpool::SerializationError&) {
      broken("the split cannot cut a chunk the executor read");
    }
  }
  fuzz::budget_check("fuzz_args", size);
  return 0;
}
