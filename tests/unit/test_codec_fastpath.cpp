// The Reader's fast path for scalars and short tuples of scalars: it must read exactly
// what msgpack's own parser reads, object for object and byte for byte.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
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

}  // namespace
