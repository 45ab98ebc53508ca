// Fuzz target, a differential one: the fast readers of the four list headers (SUBMIT,
// TASK, RESULT, DONE: proto::decode_fast) against the generic path (msgpack's parser,
// then the conversion). Whatever the fast path accepts, the generic one must accept too
// and read the same values, or the fast path has changed what the protocol means; and
// the fast path must accept what our own encoder writes, or it never runs.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <vector>

#include "budget.hpp"
#include "common/protocol.hpp"

namespace {

using namespace mqpool::proto;

auto fields(const ChunkSpec& c) {
  return std::tie(c.job, c.seq, c.count, c.fn, c.timeout_ms, c.max_retries, c.coalesced);
}
auto fields(const TaskSpec& t) { return std::tie(t.chunk, t.count, t.fn); }
auto fields(const ResultSpec& r) { return std::tie(r.job, r.seq, r.count); }
auto fields(const std::uint64_t& v) { return std::tie(v); }

template <class T>
bool same(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (fields(a[i]) != fields(b[i])) return false;
  return true;
}

[[noreturn]] void mismatch(const char* what) {
  std::fprintf(stderr, "fuzz_fastpath: %s\n", what);
  std::abort();
}

template <class T>
void check(const zmq::message_t& header) {
  using List = std::vector<T>;
  List generic;
  bool generic_ok = true;
  try {
    generic = mqpool::detail::convert<List>(
        mqpool::detail::unpack_exact(header.data(), header.size()).get());
  } catch (const mqpool::SerializationError&) {
    generic_ok = false;
  }
  List fast;
  if (decode_fast(header, fast)) {
    if (!generic_ok) mismatch("the fast path accepted a header the generic path rejects");
    if (!same(fast, generic)) mismatch("the fast and generic paths read different values");
  }
  if (!generic_ok) return;
  const zmq::message_t ours = encode(generic);
  List again;
  if (!decode_fast(ours, again)) mismatch("the fast path rejected our own encoding");
  if (!same(again, generic)) mismatch("the fast path misread our own encoding");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::budget_start();
  const zmq::message_t header(data, size);
  check<ChunkSpec>(header);
  check<TaskSpec>(header);
  check<ResultSpec>(header);
  check<std::uint64_t>(header);
  fuzz::budget_check("fuzz_fastpath", size);
  return 0;
}
