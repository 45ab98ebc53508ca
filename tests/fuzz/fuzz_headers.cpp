// Fuzz target: the headers of every command (proto::decode<H>, docs/PROTOCOL.md §4) and
// the errors frame of DONE and RESULT (decode_errors, error_count), from bytes a peer
// could send. Decoding must succeed or throw SerializationError; anything else escapes
// and is a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "budget.hpp"
#include "common/protocol.hpp"

namespace {

using namespace mqpool::proto;

template <class H>
void decode_as(const Message& m) {
  try {
    (void)decode<H>(m);
  } catch (const mqpool::SerializationError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::budget_start();
  Message m;
  m.header = zmq::message_t(data, size);
  decode_as<std::vector<ChunkSpec>>(m);
  decode_as<std::vector<ResultSpec>>(m);
  decode_as<std::vector<TaskSpec>>(m);
  decode_as<std::vector<std::uint64_t>>(m);
  decode_as<Ready>(m);
  decode_as<AgentHello>(m);
  decode_as<Hello>(m);
  decode_as<Welcome>(m);
  decode_as<Bye>(m);
  decode_as<Exited>(m);
  decode_as<Kill>(m);
  decode_as<StatusReport>(m);

  // The broker counts a chunk's failed tasks by the rows its errors frame declares
  // (error_count, without decoding them): a frame that decodes must declare what it holds.
  const std::uint32_t declared = error_count(m.header);
  try {
    if (decode_errors(m.header).size() != declared) std::abort();
  } catch (const mqpool::SerializationError&) {
  }
  fuzz::budget_check("fuzz_headers", size);
  return 0;
}
