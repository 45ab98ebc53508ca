// The msgpack codec: round trips through Packer + Reader, streams of objects, the
// limits that bound decoding, object_sizes and the is_encodable_v trait.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "mqpool/codec.hpp"

namespace unit_codec {

struct Point {
  double x = 0;
  double y = 0;
  std::string label;
  std::vector<int> tags;
  bool operator==(const Point&) const = default;
  MSGPACK_DEFINE(x, y, label, tags)
};

struct Nested {
  Point where;
  std::optional<Point> other;
  std::map<std::string, std::vector<Point>> groups;
  bool operator==(const Nested&) const = default;
  MSGPACK_DEFINE(where, other, groups)
};

enum class Color : std::uint8_t { red = 1, green = 2, blue = 200 };

struct NoDefine {
  int a = 0;
};

struct HandWritten {
  int a = 0;
};

}  // namespace unit_codec

MSGPACK_ADD_ENUM(unit_codec::Color);

template <>
struct mqpool::encodable<unit_codec::HandWritten> : std::true_type {};

namespace {

using mqpool::SerializationError;
using mqpool::detail::convert;
using mqpool::detail::is_encodable_v;
using mqpool::detail::object_sizes;
using mqpool::detail::Packer;
using mqpool::detail::Reader;
using mqpool::detail::unpack_exact;
using namespace unit_codec;

template <class T>
std::string pack_one(const T& v) {
  mqpool::detail::Buffer buf;
  Packer packer(buf);
  packer.pack(v);
  return std::string(buf.data(), buf.size());
}

template <class T>
T round_trip(const T& v) {
  const std::string bytes = pack_one(v);
  Reader reader(bytes.data(), bytes.size());
  T out = convert<T>(reader.next());
  reader.expect_end();
  EXPECT_TRUE(reader.at_end());
  EXPECT_EQ(reader.offset(), bytes.size());
  return out;
}

// --- round trips ---------------------------------------------------------------------

template <class T>
class ArithmeticRoundTrip : public ::testing::Test {};
using ArithmeticTypes =
    ::testing::Types<bool, char, std::int8_t, std::uint8_t, std::int16_t, std::uint16_t,
                     std::int32_t, std::uint32_t, std::int64_t, std::uint64_t, float, double>;
TYPED_TEST_SUITE(ArithmeticRoundTrip, ArithmeticTypes);

TYPED_TEST(ArithmeticRoundTrip, ExtremesAndZeroSurvive) {
  using L = std::numeric_limits<TypeParam>;
  for (TypeParam v : {L::lowest(), L::max(), TypeParam{0}, L::min(), TypeParam{1}})
    EXPECT_EQ(round_trip(v), v);
}

TEST(CodecRoundTrip, FloatingPointSpecialValues) {
  EXPECT_EQ(round_trip(std::numeric_limits<double>::infinity()),
            std::numeric_limits<double>::infinity());
  EXPECT_EQ(round_trip(-0.0), 0.0);  // msgpack-c packs integral doubles as integers: no sign
  EXPECT_TRUE(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
  EXPECT_EQ(round_trip(0.1), 0.1);  // bit-exact, no float narrowing
}

TEST(CodecRoundTrip, Strings) {
  EXPECT_EQ(round_trip(std::string()), "");
  EXPECT_EQ(round_trip(std::string("hello")), "hello");
  const std::string binaryish("a\0b\xff\xc0", 5);  // embedded NUL and msgpack-looking bytes
  EXPECT_EQ(round_trip(binaryish), binaryish);
  const std::string utf8 = "\xc3\xa9t\xc3\xa9 \xe2\x82\xac";
  EXPECT_EQ(round_trip(utf8), utf8);
  const std::string big(70000, 'z');  // str32 header
  EXPECT_EQ(round_trip(big), big);
}

TEST(CodecRoundTrip, Containers) {
  const std::vector<int> empty;
  EXPECT_EQ(round_trip(empty), empty);
  const std::vector<int> ints{1, -2, 3, 1 << 30};
  EXPECT_EQ(round_trip(ints), ints);
  const std::vector<std::vector<double>> grid{{1.5, 2.5}, {}, {-3.25}};
  EXPECT_EQ(round_trip(grid), grid);
  const std::vector<std::string> words{"a", "", "ccc"};
  EXPECT_EQ(round_trip(words), words);
  const std::map<std::string, int> m{{"one", 1}, {"two", 2}, {"", 0}};
  EXPECT_EQ(round_trip(m), m);
  const std::unordered_map<int, std::string> um{{1, "x"}, {-7, "y"}};
  EXPECT_EQ(round_trip(um), um);
  const std::set<std::string> s{"b", "a"};
  EXPECT_EQ(round_trip(s), s);
  const std::array<int, 3> arr{7, 8, 9};
  EXPECT_EQ(round_trip(arr), arr);
  const std::vector<int> large(100000, 42);
  EXPECT_EQ(round_trip(large), large);
}

TEST(CodecRoundTrip, TuplesPairsOptionalsEnums) {
  const auto t = std::make_tuple(1, std::string("two"), 3.0, std::vector<int>{4});
  EXPECT_EQ(round_trip(t), t);
  EXPECT_EQ(round_trip(std::tuple<>()), std::tuple<>());
  const std::pair<std::string, std::int64_t> p{"k", -5};
  EXPECT_EQ(round_trip(p), p);
  EXPECT_EQ(round_trip(std::optional<int>()), std::nullopt);
  EXPECT_EQ(round_trip(std::optional<int>(12)), 12);
  EXPECT_EQ(round_trip(std::optional<std::string>("s")), "s");
  EXPECT_EQ(round_trip(Color::blue), Color::blue);
}

TEST(CodecRoundTrip, MsgpackDefineStructs) {
  const Point p{1.5, -2.0, "origin", {1, 2, 3}};
  EXPECT_EQ(round_trip(p), p);
  Nested n;
  n.where = p;
  n.other = Point{0, 0, "", {}};
  n.groups["g"] = {p, p};
  n.groups["empty"] = {};
  EXPECT_EQ(round_trip(n), n);
  n.other.reset();
  EXPECT_EQ(round_trip(n), n);
}

TEST(CodecRoundTrip, ConvertToTheWrongTypeThrowsSerializationError) {
  const std::string bytes = pack_one(std::string("not a number"));
  Reader reader(bytes.data(), bytes.size());
  const msgpack::object& o = reader.next();
  EXPECT_THROW(convert<int>(o), SerializationError);
  EXPECT_THROW(convert<std::vector<int>>(o), SerializationError);
  EXPECT_THROW(convert<Point>(o), SerializationError);
  EXPECT_EQ(convert<std::string>(o), "not a number");  // the object is still usable
}

TEST(CodecRoundTrip, ConvertErrorsNameWhatArrivedAndTheType) {
  const std::string bytes = pack_one(std::make_tuple(std::string("a"), 1, 2.5));
  Reader reader(bytes.data(), bytes.size());
  const msgpack::object& o = reader.next();
  try {
    (void)convert<std::vector<std::string>>(o);
    FAIL() << "no exception";
  } catch (const SerializationError& e) {
    EXPECT_STREQ(e.what(),
                 "cannot decode a msgpack array of 3 (string, integer, float) as "
                 "std::vector<std::string>");
  }
}

TEST(CodecTypeName, ReadsGccAndClangSpellings) {
  using mqpool::detail::readable_type_name;
  EXPECT_EQ(readable_type_name("const char* f() [with T = std::__cxx11::basic_string<char>]"),
            "std::string");
  EXPECT_EQ(readable_type_name("const char *f() [T = std::basic_string<char>]"), "std::string");
  EXPECT_EQ(readable_type_name("const char* f() [with T = std::map<std::__cxx11::basic_string<"
                               "char>, std::vector<int> >; X = int]"),
            "std::map<std::string, std::vector<int>>");
  EXPECT_EQ(readable_type_name("const char* f() [with T = int [3]]"), "int [3]");
  EXPECT_EQ(mqpool::detail::type_name<std::vector<std::string>>(), "std::vector<std::string>");
  EXPECT_EQ(mqpool::detail::type_name<Point>(), "unit_codec::Point");
}

// --- streams -----------------------------------------------------------------------------

TEST(CodecStream, ManyObjectsComeBackInOrder) {
  mqpool::detail::Buffer buf;
  Packer packer(buf);
  constexpr int kCount = 5000;
  for (int i = 0; i < kCount; ++i) {
    switch (i % 4) {
      case 0:
        packer.pack(i);
        break;
      case 1:
        packer.pack(std::to_string(i));
        break;
      case 2:
        packer.pack(std::vector<int>(static_cast<std::size_t>(i % 7), i));
        break;
      default:
        packer.pack(std::make_tuple(i, Point{double(i), 0, "p", {i}}));
        break;
    }
  }
  Reader reader(buf.data(), buf.size());
  for (int i = 0; i < kCount; ++i) {
    ASSERT_FALSE(reader.at_end()) << "stream ended early at object " << i;
    const msgpack::object& o = reader.next();
    switch (i % 4) {
      case 0:
        ASSERT_EQ(convert<int>(o), i);
        break;
      case 1:
        ASSERT_EQ(convert<std::string>(o), std::to_string(i));
        break;
      case 2:
        ASSERT_EQ(convert<std::vector<int>>(o), std::vector<int>(std::size_t(i % 7), i));
        break;
      default: {
        auto [n, p] = convert<std::tuple<int, Point>>(o);
        ASSERT_EQ(n, i);
        ASSERT_EQ(p, (Point{double(i), 0, "p", {i}}));
      }
    }
  }
  EXPECT_TRUE(reader.at_end());
  EXPECT_NO_THROW(reader.expect_end());
  EXPECT_THROW(reader.next(), SerializationError);  // nothing left to read
}

TEST(CodecStream, ExpectEndThrowsWhileBytesRemain) {
  const std::string bytes = pack_one(1) + pack_one(2);
  Reader reader(bytes.data(), bytes.size());
  EXPECT_EQ(convert<int>(reader.next()), 1);
  EXPECT_FALSE(reader.at_end());
  EXPECT_THROW(reader.expect_end(), SerializationError);
}

TEST(CodecStream, EmptyBufferHasNoObjects) {
  Reader reader(nullptr, 0);
  EXPECT_TRUE(reader.at_end());
  EXPECT_NO_THROW(reader.expect_end());
  EXPECT_THROW(reader.next(), SerializationError);
  EXPECT_THROW(unpack_exact("", 0), SerializationError);
}

// --- limits and malformed input ------------------------------------------------------------

std::string bytes_of(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

void expect_reader_throws(const std::string& bytes, const char* what) {
  SCOPED_TRACE(what);
  Reader reader(bytes.data(), bytes.size());
  EXPECT_THROW(reader.next(), SerializationError);
  EXPECT_THROW(unpack_exact(bytes.data(), bytes.size()), SerializationError);
}

TEST(CodecLimits, TruncatedInputThrowsAtEveryCutPoint) {
  Nested n;
  n.where = Point{1, 2, "a label long enough for str8", {1, 2, 300, 70000}};
  n.groups["k"] = {n.where};
  const std::string full = pack_one(n);
  for (std::size_t cut = 0; cut < full.size(); ++cut) {
    SCOPED_TRACE("cut at " + std::to_string(cut));
    Reader reader(full.data(), cut);
    EXPECT_THROW(reader.next(), SerializationError);
    EXPECT_THROW(unpack_exact(full.data(), cut), SerializationError);
  }
}

TEST(CodecLimits, GarbageBytesThrow) {
  expect_reader_throws(bytes_of({0xc1}), "0xc1 is never used by msgpack");
  expect_reader_throws(bytes_of({0x92, 0x01, 0xc1}), "reserved byte inside an array");
  expect_reader_throws(bytes_of({0x81, 0xc1, 0x01}), "reserved byte as a map key");
}

TEST(CodecLimits, HugeDeclaredLengthsInATinyBufferThrowWithoutAllocating) {
  // Each header claims 4 G elements or bytes; a few bytes follow. A decoder without
  // limits would allocate 4 G * sizeof(msgpack::object) for the array before noticing.
  expect_reader_throws(bytes_of({0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}), "array32");
  expect_reader_throws(bytes_of({0xdc, 0xff, 0xff, 0x01}), "array16");
  expect_reader_throws(bytes_of({0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01}), "map32");
  expect_reader_throws(bytes_of({0xde, 0xff, 0xff, 0x01, 0x01}), "map16");
  expect_reader_throws(bytes_of({0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}), "str32");
  expect_reader_throws(bytes_of({0xda, 0xff, 0xff, 'a'}), "str16");
  expect_reader_throws(bytes_of({0xc6, 0xff, 0xff, 0xff, 0xff, 'a'}), "bin32");
  expect_reader_throws(bytes_of({0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'}), "ext32");
  // The same, nested: an array of one element that declares a huge map.
  expect_reader_throws(bytes_of({0x91, 0xdf, 0x7f, 0xff, 0xff, 0xff, 0x01}), "nested map32");
}

TEST(CodecLimits, HugeLengthInsideALaterObjectOfAStreamThrows) {
  std::string bytes = pack_one(std::string(1000, 'x'));  // plenty of bytes before it
  bytes += bytes_of({0xdd, 0x00, 0x10, 0x00, 0x00});     // array of 1 M elements, none present
  Reader reader(bytes.data(), bytes.size());
  EXPECT_EQ(convert<std::string>(reader.next()), std::string(1000, 'x'));
  EXPECT_THROW(reader.next(), SerializationError);
}

TEST(CodecLimits, NestingDeeperThanTheLimitThrows) {
  std::string shallow(32, '\x91');  // 32 nested one-element arrays
  shallow.push_back('\xc0');
  Reader ok(shallow.data(), shallow.size());
  EXPECT_NO_THROW(ok.next());
  EXPECT_TRUE(ok.at_end());

  for (std::size_t depth : {100u, 1000u, 100000u}) {
    std::string deep(depth, '\x91');
    deep.push_back('\xc0');
    expect_reader_throws(deep, ("depth " + std::to_string(depth)).c_str());
  }
  std::string maps;  // the same with maps: {nil: {nil: ...}}
  for (int i = 0; i < 1000; ++i) maps += bytes_of({0x81, 0xc0});
  maps += bytes_of({0xc0});
  expect_reader_throws(maps, "1000 nested maps");
}

TEST(CodecLimits, UnpackExactRejectsTrailingBytes) {
  const std::string one = pack_one(std::make_tuple(1, std::string("x")));
  EXPECT_NO_THROW(unpack_exact(one.data(), one.size()));
  const auto h = unpack_exact(one.data(), one.size());
  EXPECT_EQ((convert<std::tuple<int, std::string>>(h.get())), std::make_tuple(1, std::string("x")));
  const std::string two = one + pack_one(2);
  EXPECT_THROW(unpack_exact(two.data(), two.size()), SerializationError);
  const std::string junk = one + std::string(1, '\0');
  EXPECT_THROW(unpack_exact(junk.data(), junk.size()), SerializationError);
}

// --- object_sizes -------------------------------------------------------------------------------

TEST(CodecObjectSizes, SplitsAStreamAtObjectBoundaries) {
  const std::vector<std::string> parts{pack_one(1), pack_one(std::string(300, 'q')),
                                       pack_one(std::make_tuple(1, 2.5, std::string("s"))),
                                       pack_one(std::vector<int>(1000, 70000)), pack_one(-1)};
  std::string stream;
  for (const auto& p : parts) stream += p;
  const auto sizes = object_sizes(stream.data(), stream.size(), parts.size());
  ASSERT_EQ(sizes.size(), parts.size());
  std::size_t offset = 0;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    EXPECT_EQ(sizes[i], parts[i].size()) << "object " << i;
    EXPECT_EQ(stream.substr(offset, sizes[i]), parts[i]) << "object " << i;
    offset += sizes[i];
  }
  // Fewer than all: only the first ones, trailing bytes are the caller's business.
  EXPECT_EQ(object_sizes(stream.data(), stream.size(), 2),
            (std::vector<std::size_t>{parts[0].size(), parts[1].size()}));
  EXPECT_TRUE(object_sizes(stream.data(), stream.size(), 0).empty());
}

TEST(CodecObjectSizes, ThrowsOnTruncation) {
  const std::string stream = pack_one(1) + pack_one(std::string(40, 'w'));
  EXPECT_THROW(object_sizes(stream.data(), stream.size() - 1, 2), SerializationError);
  EXPECT_THROW(object_sizes(stream.data(), stream.size(), 3), SerializationError);
  EXPECT_THROW(object_sizes(stream.data(), 0, 1), SerializationError);
}

// The count comes from a message header (a uint32 on the wire): a count far beyond what
// the buffer can hold must be a SerializationError like any other malformed input.
TEST(CodecObjectSizes, ACountLargerThanTheBufferCanHoldThrowsSerializationError) {
  const std::string stream = pack_one(1);
  EXPECT_THROW(object_sizes(stream.data(), stream.size(), std::size_t{1} << 40),
               SerializationError);
  EXPECT_THROW(object_sizes(stream.data(), stream.size(), std::numeric_limits<std::size_t>::max()),
               SerializationError);
}

// --- is_encodable_v ------------------------------------------------------------------------------

static_assert(is_encodable_v<int>);
static_assert(is_encodable_v<bool>);
static_assert(is_encodable_v<double>);
static_assert(is_encodable_v<std::uint64_t>);
static_assert(is_encodable_v<std::string>);
static_assert(is_encodable_v<const std::string&>);
static_assert(is_encodable_v<Color>);
static_assert(is_encodable_v<Point>);
static_assert(is_encodable_v<Nested>);
static_assert(is_encodable_v<HandWritten>);
static_assert(is_encodable_v<msgpack::object>);
static_assert(is_encodable_v<std::vector<std::vector<int>>>);
static_assert(is_encodable_v<std::array<Point, 2>>);
static_assert(is_encodable_v<std::optional<Point>>);
static_assert(is_encodable_v<std::set<std::string>>);
static_assert(is_encodable_v<std::map<std::string, std::vector<double>>>);
static_assert(is_encodable_v<std::unordered_map<int, Point>>);
static_assert(is_encodable_v<std::pair<int, std::string>>);
static_assert(is_encodable_v<std::tuple<>>);
static_assert(is_encodable_v<std::tuple<int, std::string, std::optional<double>>>);

static_assert(!is_encodable_v<NoDefine>);
static_assert(!is_encodable_v<int*>);
static_assert(!is_encodable_v<const char*>);
static_assert(!is_encodable_v<std::string_view>);
static_assert(!is_encodable_v<std::list<int>>);
static_assert(!is_encodable_v<std::vector<NoDefine>>);
static_assert(!is_encodable_v<std::vector<int*>>);
static_assert(!is_encodable_v<std::optional<NoDefine>>);
static_assert(!is_encodable_v<std::map<std::string, NoDefine>>);
static_assert(!is_encodable_v<std::map<NoDefine, int>>);
static_assert(!is_encodable_v<std::unordered_map<int, void*>>);
static_assert(!is_encodable_v<std::pair<int, NoDefine>>);
static_assert(!is_encodable_v<std::tuple<int, NoDefine>>);
static_assert(!is_encodable_v<std::array<NoDefine, 1>>);

TEST(CodecTraits, IsEncodableIsCheckedAtCompileTime) {
  // The static_asserts above are the test; this keeps the suite listing honest.
  EXPECT_TRUE(is_encodable_v<Point>);
  EXPECT_FALSE(is_encodable_v<NoDefine>);
}

}  // namespace
