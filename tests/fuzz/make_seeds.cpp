// Writes the seed inputs of the fuzz targets (tests/fuzz/seeds/<target>/) from real
// encoded messages, so that the fuzzers start from what peers send. Run again after a
// change to the protocol:  build/tests/fuzz/make_seeds tests/fuzz/seeds
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "common/protocol.hpp"

namespace {

using namespace mqpool;
using namespace mqpool::proto;
namespace fs = std::filesystem;

std::string bytes(const zmq::message_t& m) { return std::string(m.data<char>(), m.size()); }

template <class... T>
std::string packed(const T&... values) {
  detail::Buffer buf;
  detail::Packer pk(buf);
  (pk.pack(values), ...);
  return std::string(buf.data(), buf.size());
}

void write(const fs::path& dir, const std::string& name, const std::string& content) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << content;
}

template <class T>
std::string le(T v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

// fuzz_values' layout: kind, job size, first, count, errors frame length, frames.
std::string outcome(std::uint8_t kind, std::uint8_t n, std::uint64_t first, std::uint16_t count,
                    const std::string& errors, const std::string& values) {
  return le(kind) + le(n) + le(first) + le(count) + le(static_cast<std::uint16_t>(errors.size())) +
         errors + values;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  const fs::path root = argv[1];
  const std::vector<ChunkSpec> chunks{{1, 0, 125, "square", 0, 2, false},
                                      {std::uint64_t{1} << 63, 4096, 64, "f", 1500, 0, true}};
  const std::vector<TaskSpec> tasks{{1, 125, "square"}, {70000, 1, "mqpool.exec_job"}};
  const std::vector<ResultSpec> results{{1, 0, 125}, {std::uint64_t{1} << 40, 1u << 31, 3}};
  const std::vector<std::uint64_t> ids{1, 2, 300, std::uint64_t{1} << 33};
  BrokerStatus status;
  status.workers.push_back({"host", 42, 4, 1, 1000, "square", 0.5, 10, false});
  status.clients.push_back({"host:7", 3, 2, 1.25});
  const WireError boom{ErrorCode::task, "std::runtime_error", "boom", "square", "host:42"};
  const std::string errors = bytes(encode_errors({{0, boom}, {2, boom}}));

  // Every header, for both header targets (the fast path's too: a miss is its case).
  const std::vector<std::pair<std::string, std::string>> headers{
      {"submit", bytes(encode(chunks))},
      {"task", bytes(encode(tasks))},
      {"result", bytes(encode(results))},
      {"done", bytes(encode(ids))},
      {"ready", bytes(encode(Ready{7, 42, "host", 2, 0, 1000, 3}))},
      {"agent_hello", bytes(encode(AgentHello{7, 41, "host", {"square", "mqpool.exec"}, 4}))},
      {"hello", bytes(encode(Hello{9, "host:7", 1000, 3}))},
      {"welcome", bytes(encode(Welcome{11, 4}))},
      {"bye", bytes(encode(Bye{"stopping"}))},
      {"exited", bytes(encode(Exited{42, "killed by signal 9 (SIGKILL)", false}))},
      {"kill", bytes(encode(Kill{42}))},
      {"status", bytes(encode(status))},
      {"errors", errors},
      {"empty_list", bytes(encode(std::vector<std::uint64_t>{}))}};
  for (const auto& [name, content] : headers) {
    write(root / "fuzz_headers", name, content);
    write(root / "fuzz_fastpath", name, content);
  }

  // fuzz_args: the selector byte (task % 4, count - 1 in the top six bits), then the frame.
  auto args = [&](const std::string& name, unsigned task, unsigned count, const std::string& f) {
    write(root / "fuzz_args", name, std::string(1, static_cast<char>(task | (count - 1) << 2)) + f);
  };
  args("twice", 0, 3, packed(std::tuple{1}, std::tuple{-70000}, std::tuple{INT64_MAX}));
  args("length", 1, 2,
       packed(std::tuple{std::string("abc"), 5}, std::tuple{std::string(40, 'x'), -1}));
  args("total", 2, 1, packed(std::tuple{std::vector<double>{0.5, 1e300, -2}}));
  args("nested", 3, 1,
       packed(std::tuple{std::tuple{std::int64_t{3}, std::string("k")}, std::vector<double>{1.5}}));

  const auto nil = std::string(1, '\xc0');
  write(root / "fuzz_values", "map_int",
        outcome(0, 4, 0, 4, "", packed(1, -2, std::int64_t{1} << 40, 4)));
  write(root / "fuzz_values", "map_int_errors",
        outcome(0, 8, 4, 3, errors, packed(5) + nil + packed(7)));
  write(root / "fuzz_values", "map_u8", outcome(1, 3, 0, 3, "", packed(1, 255, 256)));
  write(root / "fuzz_values", "map_string",
        outcome(2, 2, 0, 2, "", packed(std::string("a"), std::string(300, 'b'))));
  write(root / "fuzz_values", "apply_doubles",
        outcome(3, 1, 0, 1, "", packed(std::vector<double>{1.0, -0.25})));
  write(root / "fuzz_values", "stream_tuple",
        outcome(4, 3, 1, 2, "",
                packed(std::tuple{1, std::string("x")}, std::tuple{2, std::string()})));
  std::printf("seeds written under %s\n", root.c_str());
  return 0;
}
