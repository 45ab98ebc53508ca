// ChunkWriter, where a map's arguments are cut into chunks: add_integers, the one-loop
// path for f(int) over contiguous integers, must write the very bytes and cut the very
// chunks that add() writes item by item, whatever the chunksize and the byte cap.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "mqpool/detail/job.hpp"

namespace {

using mqpool::detail::ChunkWriter;
using mqpool::detail::EncodedChunk;

struct Cut {
  std::uint64_t first;
  std::uint32_t count;
  std::string bytes;
  bool operator==(const Cut&) const = default;
};

std::vector<Cut> cuts(std::vector<EncodedChunk> chunks) {
  std::vector<Cut> out;
  for (const auto& c : chunks)
    out.push_back({c.first, c.count, std::string(c.args.data(), c.args.size())});
  return out;
}

template <class T>
std::vector<Cut> one_by_one(const std::vector<T>& in, std::uint32_t chunksize, std::size_t cap) {
  ChunkWriter w(chunksize, cap);
  for (const T& x : in) w.add(std::tuple<const T&>(x));
  return cuts(w.take());
}

// As Pool::submit_map drives it: the closed chunks taken between calls.
template <class T>
std::vector<Cut> in_runs(const std::vector<T>& in, std::uint32_t chunksize, std::size_t cap) {
  ChunkWriter w(chunksize, cap);
  std::vector<Cut> out;
  for (std::size_t i = 0; i < in.size();) {
    const std::size_t k = w.add_integers(in.data() + i, in.size() - i);
    EXPECT_GE(k, 1u);
    i += k;
    if (w.closed() >= 2)
      for (auto& c : cuts(w.take_closed())) out.push_back(std::move(c));
  }
  for (auto& c : cuts(w.take())) out.push_back(std::move(c));
  return out;
}

// Every width of msgpack integer, in runs of one width and mixed.
std::vector<std::int64_t> mixed(std::size_t n) {
  const std::int64_t edges[] = {0,     1,     127,          128,          255,       256,
                                65535, 65536, 4294967295LL, 4294967296LL, INT64_MAX, -1,
                                -32,   -33,   -129,         -32769,       INT32_MIN, INT64_MIN};
  std::mt19937_64 rng(7);
  std::vector<std::int64_t> v;
  for (std::size_t i = 0; i < n; ++i) {
    if (i % 3 == 0)
      v.push_back(edges[rng() % std::size(edges)]);
    else
      v.push_back(static_cast<std::int64_t>(i) * static_cast<std::int64_t>(i));
  }
  return v;
}

TEST(ChunkWriter, AddIntegersCutsTheChunksAddCuts) {
  const auto in = mixed(20000);
  const std::pair<std::uint32_t, std::size_t> shapes[] = {
      {1, 0},           {7, 0},          {1250, 0}, {20000, 0},   {1u << 30, 40 << 10},
      {1250, 40 << 10}, {1u << 30, 100}, {3, 5},    {1u << 30, 1}};
  for (const auto& [chunksize, cap] : shapes) {
    const auto expected = one_by_one(in, chunksize, cap);
    const auto got = in_runs(in, chunksize, cap);
    ASSERT_EQ(got.size(), expected.size()) << "chunksize " << chunksize << " cap " << cap;
    for (std::size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i], expected[i])
          << "chunk " << i << ", chunksize " << chunksize << " cap " << cap;
  }
}

TEST(ChunkWriter, AddIntegersTakesEveryIntegerType) {
  const std::vector<std::uint64_t> big = {0, 1, 200, 70000,
                                          std::numeric_limits<std::uint64_t>::max()};
  EXPECT_EQ(in_runs(big, 2, 0), one_by_one(big, 2, 0));
  const std::vector<std::int8_t> small = {-128, -33, -1, 0, 127};
  EXPECT_EQ(in_runs(small, 4, 3), one_by_one(small, 4, 3));
}

}  // namespace
