// Fuzz target: the outcome frames of a RESULT chunk (errors and values, docs/PROTOCOL.md
// §5) delivered to the client's jobs as the session delivers them (Session::deliver_chunk),
// with the chunk's first index and count from the bytes too, as a broker could send them
// (deliver_chunk, white-box: what Session::deliver calls for each chunk of a RESULT).
// Layout: kind (1 byte), job size (1), first (8, little-endian), count (2), errors frame
// length (2), the errors frame, the values frame.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "budget.hpp"
#include "client/src/session.hpp"
#include "common/log.hpp"
#include "mqpool/detail/jobs.hpp"

namespace {

using namespace mqpool::detail;

template <class T>
T take(const std::uint8_t*& p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  p += sizeof v;
  return v;
}

template <class R>
std::unique_ptr<Job> map_job(std::size_t n) {
  return std::make_unique<MapJob<R>>(std::make_shared<ResultState<MapResult<R>>>(),
                                     mqpool::MapOptions<R>{}, n, "fuzz");
}

std::unique_ptr<Job> stream_job(std::size_t n) {
  auto job = std::make_unique<StreamJob<std::tuple<std::int64_t, std::string>>>(true, "fuzz");
  for (std::size_t i = 0; i < n; ++i) job->outstanding.insert(i);
  return job;
}

std::unique_ptr<Job> make_job(std::uint8_t kind, std::size_t n) {
  switch (kind % 5) {
    case 0:
      return map_job<std::int64_t>(n);
    case 1:
      return map_job<std::uint8_t>(n);  // integers that may not fit
    case 2:
      return map_job<std::string>(n);
    case 3:
      return std::make_unique<ApplyJob<std::vector<double>>>(
          mqpool::Callbacks<std::vector<double>>{}, "fuzz");
    default:
      return stream_job(n);
  }
}

// A chunk with trailing bytes is logged, at warn level: a line per input would make the
// target ten times slower, and says nothing the fuzzer can use.
[[maybe_unused]] const bool quiet = (mqpool::detail::set_log_level("off"), true);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::budget_start();
  constexpr std::size_t kHead = 1 + 1 + 8 + 2 + 2;
  if (size < kHead) return 0;
  const std::uint8_t* p = data;
  const auto kind = take<std::uint8_t>(p);
  const auto n = take<std::uint8_t>(p);
  const auto first = take<std::uint64_t>(p);
  const auto count = take<std::uint16_t>(p);
  const std::size_t left = size - kHead;
  const std::size_t errors_len = std::min<std::size_t>(take<std::uint16_t>(p), left);
  const zmq::message_t errors_frame(p, errors_len);
  const zmq::message_t values_frame(p + errors_len, left - errors_len);

  const std::unique_ptr<Job> job = make_job(kind, n);
  const mqpool::proto::ResultSpec spec{0, first, count};
  try {
    if (deliver_chunk(*job, spec, errors_frame, values_frame) > count) std::abort();
  } catch (const mqpool::SerializationError&) {
  }
  fuzz::budget_check("fuzz_values", size);
  return 0;
}
