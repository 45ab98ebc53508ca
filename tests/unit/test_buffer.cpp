// detail::Buffer, the bytes of an outgoing frame: contents survive growth from a small
// malloc'd buffer into a huge-page mapping, large buffers start at a 2 MiB boundary, and
// a released buffer is freed by ZeroMQ through to_frame. Also the large-payload decode
// path (huge_capacity + prefer_huge_pages), which must return exactly the bytes sent.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mqpool/buffer.hpp"
#include "mqpool/codec.hpp"
#include "protocol.hpp"

namespace {

using mqpool::detail::Buffer;

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131) ^ (i >> 9));
  return s;
}

TEST(Buffer, GrowsFromSmallToHugeKeepingEveryByte) {
  const std::string want = pattern(3 * Buffer::kHugeFrom + 12345);
  Buffer b(64);
  for (std::size_t i = 0; i < want.size(); i += 1000)
    b.write(want.data() + i, std::min<std::size_t>(1000, want.size() - i));
  ASSERT_EQ(b.size(), want.size());
  EXPECT_GE(b.capacity(), want.size());
  EXPECT_EQ(std::string(b.data(), b.size()), want);
}

TEST(Buffer, LargeBuffersAreWholeHugePagesAtA2MiBBoundary) {
  Buffer b(Buffer::kHugeFrom);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % (2 << 20), 0u);
  EXPECT_EQ(b.capacity() % (2 << 20), 0u);
  Buffer small(100);
  EXPECT_LT(small.capacity(), Buffer::kHugeFrom);
}

TEST(Buffer, MoveLeavesTheSourceEmpty) {
  Buffer a(16);
  a.write("abc", 3);
  Buffer b(std::move(a));
  EXPECT_EQ(std::string(b.data(), b.size()), "abc");
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  a = std::move(b);
  EXPECT_EQ(std::string(a.data(), a.size()), "abc");
}

TEST(Buffer, ReleasedIntoAFrameKeepsItsBytes) {
  for (const std::size_t n : {std::size_t{10}, std::size_t{5000}, 2 * Buffer::kHugeFrom}) {
    const std::string want = pattern(n);
    Buffer b(n);
    b.write(want.data(), want.size());
    const zmq::message_t frame = mqpool::proto::to_frame(std::move(b));
    ASSERT_EQ(frame.size(), n);
    EXPECT_EQ(std::string(frame.data<char>(), frame.size()), want);
  }  // each frame's free function runs here; ASan/valgrind would catch a wrong one
}

TEST(Buffer, HugeCapacityHoldsTheDataAndEndsOnAHugePage) {
  for (const std::size_t n : {std::size_t{1}, std::size_t{4} << 20, (std::size_t{4} << 20) - 64}) {
    const std::size_t c = mqpool::detail::huge_capacity(n);
    EXPECT_GE(c, n);
    EXPECT_EQ((c + 64) % (2 << 20), 0u) << n;
  }
}

TEST(Buffer, LargeStringsAndBytesDecodeExactly) {
  const std::string want = pattern(5 << 20);
  Buffer buf;
  mqpool::detail::Packer packer(buf);
  packer.pack(want);
  packer.pack(std::vector<char>(want.begin(), want.end()));
  mqpool::detail::Reader reader(buf.data(), buf.size());
  EXPECT_EQ(mqpool::detail::convert<std::string>(reader.next()), want);
  const auto bytes = mqpool::detail::convert<std::vector<char>>(reader.next());
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), want);
  EXPECT_TRUE(reader.at_end());
}

}  // namespace
