// detail::Buffer, the bytes of an outgoing frame: contents survive growth from a small
// malloc'd buffer into a huge-page mapping, large buffers start at a 2 MiB boundary, and
// a released buffer is freed by ZeroMQ through to_frame. BufferArena's buffers share
// blocks that are unmapped with the last of them, and keep their bytes wherever they go. Also the
// large-payload decode path (huge_capacity + prefer_huge_pages), which must return exactly the
// bytes sent.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "common/protocol.hpp"
#include "mqpool/buffer.hpp"
#include "mqpool/codec.hpp"

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

using mqpool::detail::BufferArena;

// True while [p, p + 1) is mapped: msync fails with ENOMEM on an unmapped address.
bool mapped(const void* p) {
  const auto page = reinterpret_cast<std::uintptr_t>(p) / 4096 * 4096;
  return msync(reinterpret_cast<void*>(page), 4096, MS_ASYNC) == 0 || errno != ENOMEM;
}

const char* block_of(const Buffer& b) {
  return reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(b.data()) / (2 << 20) *
                                       (2 << 20));
}

TEST(BufferArena, BuffersAfterTheFirstShareABlockAndKeepTheirBytes) {
  std::vector<Buffer> held;
  std::vector<std::string> want;
  {
    BufferArena arena;
    for (int i = 0; i < 200; ++i) {  // 200 x ~40 KiB: several 2 MiB blocks
      Buffer b = arena.take(40 << 10);
      want.push_back(pattern(static_cast<std::size_t>(30000 + 37 * i)));
      b.write(want.back().data(), want.back().size());
      arena.trim(b);
      if (i > 0) {  // the first comes from the heap
        EXPECT_LT(b.capacity(), b.size() + 16) << "trim gives the unwritten end back";
      }
      held.push_back(std::move(b));
    }
  }  // the arena's own reference is gone; the buffers keep their blocks alive
  EXPECT_NE(block_of(held[1]), held[1].data()) << "carved after the block's head";
  EXPECT_EQ(block_of(held[1]), block_of(held[2])) << "consecutive buffers share a block";
  EXPECT_NE(block_of(held[1]), block_of(held[199]));
  for (std::size_t i = 0; i + 1 < held.size(); ++i) {
    if (i > 0 && block_of(held[i]) == block_of(held[i + 1])) {
      EXPECT_LE(held[i].data() + held[i].size(), held[i + 1].data()) << "no overlap";
    }
  }
  for (std::size_t i = 0; i < held.size(); ++i)
    ASSERT_EQ(std::string(held[i].data(), held[i].size()), want[i]) << i;
}

TEST(BufferArena, ABlockIsUnmappedWithItsLastBuffer) {
  BufferArena arena;
  Buffer first = arena.take(1000);  // from the heap
  Buffer a = arena.take(1000);
  Buffer b = arena.take(1000);
  const char* block = block_of(a);
  ASSERT_EQ(block, block_of(b));
  ASSERT_NE(block, block_of(first));
  arena = BufferArena();  // drops the arena's reference to the block
  a = Buffer(16);
  EXPECT_TRUE(mapped(block)) << "b still holds the block";
  const std::string want = pattern(900);  // more than a frame copies inline
  b.write(want.data(), want.size());
  zmq::message_t frame = mqpool::proto::to_frame(std::move(b));
  EXPECT_TRUE(mapped(block)) << "the frame now holds it";
  EXPECT_EQ(std::string(frame.data<char>(), frame.size()), want);
  frame.rebuild();  // ZeroMQ calls the free function of the old contents
  EXPECT_FALSE(mapped(block)) << "the last reference is gone: the block must be unmapped";
}

TEST(BufferArena, ABufferThatOutgrowsItsSliceMovesOutWithItsBytes) {
  BufferArena arena;
  (void)arena.take(64);
  Buffer b = arena.take(64);
  Buffer next = arena.take(64);  // the slice after b's: b cannot grow in place
  const std::string want = pattern(100000);
  b.write(want.data(), want.size());
  next.write("n", 1);
  EXPECT_EQ(std::string(b.data(), b.size()), want);
  EXPECT_EQ(std::string(next.data(), next.size()), "n");
  Buffer large = arena.take(4 << 20);  // too large for a block: its own mapping
  EXPECT_GE(large.capacity(), std::size_t{4} << 20);
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
