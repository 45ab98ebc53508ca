// Argument and result types: user structs, std containers, void, and large payloads.
#include <mqpool/mqpool.hpp>

#include "helpers.hpp"
#include "tasks.hpp"

namespace itest {
namespace {

constexpr std::size_t k16MiB = std::size_t{16} << 20;

TEST(Types, UserStructWithMsgpackDefine) {
  mqpool::Pool pool(2);
  const Point p{3, 2.5, "corner", {1, 2}};
  const Point moved =
      bounded(kLong, "apply", [&] { return pool.apply(shift, p, std::int64_t{10}); });
  EXPECT_EQ(moved, (Point{13, 2.5, "corner", {1, 2, 10}}));

  std::vector<std::tuple<Point, std::int64_t>> args;
  for (int i = 0; i < 20; ++i) args.emplace_back(Point{i, i / 2.0, "p" + std::to_string(i), {}}, i);
  const auto out = bounded(kLong, "starmap", [&] { return pool.starmap(shift, args, 3); });
  ASSERT_EQ(out.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(out[i], (Point{2 * i, i / 2.0, "p" + std::to_string(i), {i}}));
  }
}

TEST(Types, StandardContainers) {
  mqpool::Pool pool(2);
  EXPECT_EQ(pool.apply_async(half_if_even, std::int64_t{8}).get(kLong),
            std::optional<std::int64_t>(4));
  EXPECT_EQ(pool.apply_async(half_if_even, std::int64_t{7}).get(kLong), std::nullopt);
  const auto counts = pool.apply_async(count_words, std::string("a b a c a")).get(kLong);
  EXPECT_EQ(counts, (std::map<std::string, std::int64_t>{{"a", 3}, {"b", 1}, {"c", 1}}));
  const auto tagged = pool.apply_async(tag, std::int64_t{21}, std::string("hi")).get(kLong);
  EXPECT_EQ(tagged, (std::tuple<std::int64_t, std::string>{42, "hi!"}));
  const auto halves = bounded(kLong, "map", [&] {
    return pool.map(half_if_even, std::vector<std::int64_t>{1, 2, 3, 4});
  });
  EXPECT_EQ(halves, (std::vector<std::optional<std::int64_t>>{std::nullopt, 1, std::nullopt, 2}));
}

TEST(Types, StringsKeepEveryByte) {
  mqpool::Pool pool(2);
  const char raw[] =
      "nul\0inside, \xc3\xbc"
      "n\xc3\xaf"
      "c\xc3\xb6"
      "d\xc3\xa9, \xff\xfe";
  const std::string tricky(raw, sizeof raw - 1);
  EXPECT_EQ(pool.apply_async(echo_string, tricky).get(kLong), tricky);
  EXPECT_EQ(pool.apply_async(echo_string, std::string()).get(kLong), "");
}

TEST(Types, VoidResults) {
  TempDir dir;
  mqpool::Pool pool(2);
  std::vector<std::string> paths;
  for (int i = 0; i < 5; ++i) paths.push_back(dir.file("f" + std::to_string(i)));
  // map of a void function: it runs every task and returns once all are done.
  bounded(kLong, "map(void)", [&] { (void)pool.map(touch, paths); });
  for (const auto& p : paths) EXPECT_TRUE(file_exists(p)) << p;
  mqpool::AsyncResult<void> r = pool.apply_async(noop);
  bounded(kLong, "get", [&] { r.get(kLong); });
  EXPECT_TRUE(r.successful());
}

TEST(Types, SixteenMiBBytesRoundTrip) {
  mqpool::Pool pool(2);
  std::vector<char> big(k16MiB);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) ^ (i >> 9));
  const auto back = pool.apply_async(echo_bytes, big).get(std::chrono::seconds(60));
  ASSERT_EQ(back.size(), big.size());
  EXPECT_TRUE(back == big);
}

TEST(Types, SixteenMiBStringRoundTripThroughMap) {
  mqpool::Pool pool(2);
  std::string big(k16MiB, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  const std::vector<std::string> in{big, "small", big};
  const auto out = bounded(std::chrono::seconds(90), "map of 16 MiB strings",
                           [&] { return pool.map(echo_string, in); });
  ASSERT_EQ(out.size(), 3u);
  EXPECT_TRUE(out[0] == big);
  EXPECT_EQ(out[1], "small");
  EXPECT_TRUE(out[2] == big);
}

}  // namespace
}  // namespace itest
