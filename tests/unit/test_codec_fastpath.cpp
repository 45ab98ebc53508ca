// The Reader's fast path for scalars and short tuples of scalars: it must read exactly
// what msgpack's own parser reads, object for object and byte for byte.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mqpool/codec.hpp"

namespace {

using mqpool::SerializationError;
using mqpool::detail::convert;
using mqpool::detail::Packer;
using mqpool::detail::Reader;

template <class T>
std::string pack_one(const T& v) {
  mqpool::detail::Buffer buf;
  Packer packer(buf);
  packer.pack(v);
  return std::string(buf.data(), buf.size());
}

// The object msgpack's own parser makes of `bytes`, and how many bytes it took.
std::pair<msgpack::object_handle, std::size_t> reference(const std::string& bytes) {
  std::size_t off = 0;
  auto h = msgpack::unpack(bytes.data(), bytes.size(), off);
  return {std::move(h), off};
}

void expect_same_as_msgpack(const std::string& bytes) {
  SCOPED_TRACE(::testing::PrintToString(std::vector<unsigned char>(bytes.begin(), bytes.end())));
  const auto [expected, used] = reference(bytes);
  Reader reader(bytes.data(), bytes.size());
  const msgpack::object& got = reader.next();
  EXPECT_EQ(got.type, expected.get().type);
  EXPECT_TRUE(got == expected.get());
  EXPECT_EQ(reader.offset(), used);
}

TEST(CodecFastPath, EveryScalarEncodingDecodesAsMsgpackDoes) {
  using L64 = std::numeric_limits<std::int64_t>;
  const std::vector<std::int64_t> ints{0,
                                       1,
                                       127,
                                       128,
                                       255,
                                       256,
                                       65535,
                                       65536,
                                       -1,
                                       -32,
                                       -33,
                                       -128,
                                       -129,
                                       -32768,
                                       -32769,
                                       2147483647,
                                       4294967295,
                                       4294967296,
                                       L64::max(),
                                       L64::min(),
                                       -2147483648LL,
                                       -2147483649LL};
  for (std::int64_t v : ints) {
    expect_same_as_msgpack(pack_one(v));
    expect_same_as_msgpack(pack_one(std::make_tuple(v)));
  }
  expect_same_as_msgpack(pack_one(std::numeric_limits<std::uint64_t>::max()));
  for (double d : {0.5, -1.25, 1e300, -1e-300}) expect_same_as_msgpack(pack_one(d));
  expect_same_as_msgpack(pack_one(0.25f));
  expect_same_as_msgpack(pack_one(true));
  expect_same_as_msgpack(pack_one(false));
  expect_same_as_msgpack(pack_one(msgpack::type::nil_t()));
  // Non-canonical but valid encodings: a small positive number in wide signed formats.
  const std::vector<std::string> raw{std::string("\xd0\x05", 2),
                                     std::string("\xd1\x00\x05", 3),
                                     std::string("\xd2\x00\x00\x00\x05", 5),
                                     std::string("\xd3\x00\x00\x00\x00\x00\x00\x00\x05", 9),
                                     std::string("\xcc\x05", 2),
                                     std::string("\xcd\x00\x05", 3),
                                     std::string("\xce\x00\x00\x00\x05", 5)};
  for (const auto& r : raw) expect_same_as_msgpack(r);
}

TEST(CodecFastPath, ShortTuplesOfScalarsDecodeAsMsgpackDoes) {
  expect_same_as_msgpack(pack_one(std::tuple<>()));
  expect_same_as_msgpack(pack_one(std::make_tuple(1, -2, 3.5, true, 70000, -70000, 0.25f, 255)));
  expect_same_as_msgpack(pack_one(std::vector<int>(9, -1)));  // one too many for the fast path
  expect_same_as_msgpack(pack_one(std::make_tuple(1, std::string("s"))));  // not all scalars
  expect_same_as_msgpack(pack_one(std::make_tuple(std::vector<int>{1}, 2)));
}

TEST(CodecFastPath, ObjectsStayValidUntilTheNextCall) {
  const std::string bytes = pack_one(std::make_tuple(1, 2)) + pack_one(std::make_tuple(3, 4, 5)) +
                            pack_one(std::make_tuple(std::string("x"), 6));
  Reader reader(bytes.data(), bytes.size());
  EXPECT_EQ((convert<std::tuple<int, int>>(reader.next())), std::make_tuple(1, 2));
  EXPECT_EQ((convert<std::tuple<int, int, int>>(reader.next())), std::make_tuple(3, 4, 5));
  EXPECT_EQ((convert<std::tuple<std::string, int>>(reader.next())),
            std::make_tuple(std::string("x"), 6));
  EXPECT_TRUE(reader.at_end());
}

TEST(CodecFastPath, TruncatedScalarsAndShortTuplesThrow) {
  for (const std::string& full : {pack_one(std::int64_t{1} << 40), pack_one(2.5), pack_one(70000),
                                  pack_one(std::make_tuple(1, 70000, 2.5))}) {
    for (std::size_t cut = 1; cut < full.size(); ++cut) {
      Reader reader(full.data(), cut);
      EXPECT_THROW(reader.next(), SerializationError) << "cut " << cut << " of " << full.size();
    }
  }
}

// pack_integer and Reader::next_integer, the integer fast path of map's arguments and
// results: the same bytes as msgpack's packer at every width boundary, the same values
// back, and nothing consumed for what does not fit.
const std::int64_t kIntegerEdges[] = {0,
                                      1,
                                      31,
                                      32,
                                      127,
                                      128,
                                      255,
                                      256,
                                      65535,
                                      65536,
                                      4294967295LL,
                                      4294967296LL,
                                      INT64_MAX,
                                      -1,
                                      -32,
                                      -33,
                                      -128,
                                      -129,
                                      -32768,
                                      -32769,
                                      INT32_MIN,
                                      INT32_MIN - 1LL,
                                      INT64_MIN};

TEST(CodecFastPath, PackIntegerWritesWhatMsgpackWrites) {
  for (const std::int64_t v : kIntegerEdges) {
    mqpool::detail::Buffer ours;
    mqpool::detail::pack_integer(ours, v);
    EXPECT_EQ(std::string(ours.data(), ours.size()), pack_one(v)) << v;
  }
  mqpool::detail::Buffer big;
  mqpool::detail::pack_integer(big, std::uint64_t{UINT64_MAX});
  EXPECT_EQ(std::string(big.data(), big.size()), pack_one(std::uint64_t{UINT64_MAX}));
}

TEST(CodecFastPath, NextIntegerReadsBackEveryWidth) {
  for (const std::int64_t v : kIntegerEdges) {
    const std::string bytes = pack_one(v) + pack_one(std::make_tuple(v));
    Reader reader(bytes.data(), bytes.size());
    std::int64_t a = 0, b = 0;
    ASSERT_TRUE(reader.next_integer(a)) << v;
    ASSERT_TRUE(reader.next_integer_tuple(b)) << v;
    EXPECT_EQ(a, v);
    EXPECT_EQ(b, v);
    EXPECT_TRUE(reader.at_end());
  }
}

TEST(CodecFastPath, NextIntegerConsumesNothingItCannotTake) {
  // Too large for the type, not an integer, or truncated: false, and next() still works.
  const std::string bytes = pack_one(70000) + pack_one(2.5) + pack_one(std::string("x"));
  Reader reader(bytes.data(), bytes.size());
  std::int16_t small = 0;
  EXPECT_FALSE(reader.next_integer(small));
  EXPECT_EQ(convert<int>(reader.next()), 70000);
  std::int64_t v = 0;
  EXPECT_FALSE(reader.next_integer(v));
  EXPECT_FALSE(reader.next_integer_tuple(v));
  EXPECT_EQ(convert<double>(reader.next()), 2.5);
  EXPECT_FALSE(reader.next_integer(v));
  EXPECT_EQ(convert<std::string>(reader.next()), "x");
  EXPECT_FALSE(reader.next_integer(v));  // at the end
  std::uint8_t u = 0;
  const std::string negative = pack_one(-1);
  Reader r2(negative.data(), negative.size());
  EXPECT_FALSE(r2.next_integer(u));
  const std::string cut = pack_one(std::int64_t{1} << 40).substr(0, 5);
  Reader r3(cut.data(), cut.size());
  EXPECT_FALSE(r3.next_integer(v));
  EXPECT_THROW(r3.next(), SerializationError);
}

TEST(CodecFastPath, NextIntegersReadsARunAndStopsBeforeWhatItCannotTake) {
  std::string bytes;
  for (const std::int64_t v : kIntegerEdges) bytes += pack_one(v);
  const std::size_t n = std::size(kIntegerEdges);
  const std::string run = bytes;
  bytes += pack_one(2.5);
  std::vector<std::int64_t> out(n + 5, 42);
  Reader reader(bytes.data(), bytes.size());
  ASSERT_EQ(reader.next_integers(out.data(), out.size()), n);
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(out[i], kIntegerEdges[i]) << i;
  EXPECT_EQ(out[n], 42) << "nothing written past the run";
  EXPECT_EQ(reader.offset(), run.size());
  EXPECT_EQ(convert<double>(reader.next()), 2.5);

  // Every width at the very end of the buffer (fewer than 8 bytes after the tag), and
  // cut anywhere: the whole integers before the cut are read, the cut one is not.
  for (const std::int64_t v : kIntegerEdges) {
    const std::string two = pack_one(std::int64_t{7}) + pack_one(v);
    for (std::size_t cut = 1; cut <= two.size(); ++cut) {
      Reader r(two.data(), cut);
      std::int64_t got[2] = {0, 0};
      const std::size_t k = r.next_integers(got, 2);
      EXPECT_EQ(k, cut == two.size() ? 2u : 1u) << v << " cut " << cut;
      EXPECT_EQ(got[0], 7);
      if (k == 2) {
        EXPECT_EQ(got[1], v);
      }
      EXPECT_EQ(r.offset(), k == 2 ? two.size() : 1u);
    }
  }

  // Long runs, read by the loop that needs 9 bytes ahead: for each type, next_integers
  // reads what next_integer reads one by one, and stops where it stops.
  std::string edges;
  for (int round = 0; round < 3; ++round)
    for (const std::int64_t v : kIntegerEdges) edges += pack_one(v);
  edges += pack_one(std::uint64_t{UINT64_MAX});
  edges += std::string(16, '\0');  // sixteen zeros: every value above has 9 bytes after it
  auto agree = [&]<class T>(T) {
    std::vector<T> fast(edges.size()), slow(edges.size());
    Reader a(edges.data(), edges.size()), b(edges.data(), edges.size());
    const std::size_t k = a.next_integers(fast.data(), fast.size());
    std::size_t j = 0;
    while (j < slow.size() && b.next_integer(slow[j])) ++j;
    EXPECT_EQ(k, j) << typeid(T).name();
    EXPECT_EQ(a.offset(), b.offset()) << typeid(T).name();
    fast.resize(k);
    slow.resize(j);
    EXPECT_EQ(fast, slow) << typeid(T).name();
  };
  agree(std::int64_t{});
  agree(std::uint64_t{});
  agree(std::int32_t{});
  agree(std::uint32_t{});
  agree(std::int16_t{});
  agree(std::uint8_t{});
  agree(std::int8_t{});

  // Too wide for the type: stops there.
  const std::string wide = pack_one(1) + pack_one(70000) + pack_one(2);
  Reader r(wide.data(), wide.size());
  std::int16_t small[3] = {};
  EXPECT_EQ(r.next_integers(small, 3), 1u);
  EXPECT_EQ(convert<int>(r.next()), 70000);
}

}  // namespace
