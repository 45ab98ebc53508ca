// common/shm.hpp within one process: the Refs a chunk's arguments travel as, what
// map_args refuses, and the lending of an executor's value segments.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <tuple>

#include "common/shm.hpp"
#include "mqpool/codec.hpp"
#include "mqpool/errors.hpp"

namespace {

using mqpool::SerializationError;
using namespace mqpool::shm;

constexpr std::int64_t kMax = std::int64_t{256} << 20;

// Three argument tuples of different sizes, encoded one after another.
std::string three_tuples() {
  mqpool::detail::Buffer b;
  mqpool::detail::Packer pk(b);
  pk.pack(std::make_tuple(std::string(1000, 'a')));
  pk.pack(std::make_tuple(std::string(5000, 'b')));
  pk.pack(std::make_tuple(std::string(20, 'c')));
  return std::string(b.data(), b.size());
}

std::string bytes_of(const zmq::message_t& m) { return std::string(m.data<char>(), m.size()); }

TEST(SharedMemoryRefs, ArgumentsMapBackToTheirBytesWholeOrInPieces) {
  const std::string args = three_tuples();
  ArgSegment segment(args.data(), args.size(), 3);
  const zmq::message_t frame = segment.frame();
  ASSERT_TRUE(is_args_ref(frame));
  EXPECT_EQ(frame.size() % 3, 0u);
  EXPECT_EQ(bytes_of(map_args(frame, getpid(), kMax)), args);
  // The broker may cut the frame at task boundaries: the last two Refs stand for the
  // last two tuples.
  const std::size_t one = frame.size() / 3;
  const zmq::message_t tail(frame.data<char>() + one, 2 * one);
  const std::string mapped = bytes_of(map_args(tail, getpid(), kMax));
  EXPECT_EQ(mapped, args.substr(args.size() - mapped.size()));
  EXPECT_LT(mapped.size(), args.size());
}

TEST(SharedMemoryRefs, AnInlineChunkIsNotARef) {
  const std::string args = three_tuples();
  EXPECT_FALSE(is_args_ref(zmq::message_t(args.data(), args.size())));
}

TEST(SharedMemoryRefs, MapArgsRefusesRefsThatDoNotCheckOut) {
  const std::string args = three_tuples();
  ArgSegment segment(args.data(), args.size(), 3);
  const zmq::message_t frame = segment.frame();
  const std::size_t one = frame.size() / 3;
  // Not this pool's client.
  EXPECT_THROW(map_args(frame, getpid() + 1, kMax), SerializationError);
  // Larger than the largest message.
  EXPECT_THROW(map_args(frame, getpid(), 100), SerializationError);
  // A gap: the first and the last Ref, without the middle one.
  std::string gap(frame.data<char>(), one);
  gap.append(frame.data<char>() + 2 * one, one);
  EXPECT_THROW(map_args(zmq::message_t(gap.data(), gap.size()), getpid(), kMax),
               SerializationError);
  // A frame that is not whole Refs.
  EXPECT_THROW(map_args(zmq::message_t(frame.data<char>(), one + 1), getpid(), kMax),
               SerializationError);
}

TEST(SharedMemoryRefs, AClosedSegmentCannotBeMappedEvenIfItsNumberIsReused) {
  const std::string args = three_tuples();
  std::string frame;
  {
    ArgSegment segment(args.data(), args.size(), 3);
    frame = bytes_of(segment.frame());
  }
  EXPECT_THROW(map_args(zmq::message_t(frame.data(), frame.size()), getpid(), kMax),
               SerializationError);
  // The descriptor's number now names another memfd: its inode tells them apart.
  const int other = memfd_create("other", MFD_CLOEXEC);
  ASSERT_GE(other, 0);
  ASSERT_EQ(ftruncate(other, 1 << 20), 0);
  EXPECT_THROW(map_args(zmq::message_t(frame.data(), frame.size()), getpid(), kMax),
               SerializationError);
  close(other);
}

mqpool::detail::Buffer values_of(std::size_t n, char fill) {
  mqpool::detail::Buffer b;
  std::memset(b.tail(n), fill, n);
  b.commit(n);
  return b;
}

TEST(SharedMemoryValues, ASegmentIsLentUntilItsFrameIsFreed) {
  ResultSegments segments;
  const auto first = values_of(300000, 'x');
  std::optional<zmq::message_t> ref = segments.lend(first);
  ASSERT_TRUE(ref.has_value());
  ASSERT_TRUE(is_values_ref(*ref));
  std::optional<zmq::message_t> mapped = map_values(*ref, kMax);
  EXPECT_EQ(bytes_of(*mapped), std::string(300000, 'x'));
  // While it is out, other values go to other segments, up to three; then inline.
  auto second = segments.lend(values_of(1000, 'y'));
  auto third = segments.lend(values_of(1000, 'z'));
  ASSERT_TRUE(second && third);
  EXPECT_FALSE(segments.lend(values_of(1000, 'w')).has_value()) << "a fourth segment";
  // Freeing the mapped frame hands the first back; its bytes are not written over before.
  EXPECT_EQ(bytes_of(*mapped), std::string(300000, 'x'));
  mapped.reset();
  auto again = segments.lend(values_of(5000, 'v'));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(bytes_of(map_values(*again, kMax)), std::string(5000, 'v'));
  // Every segment mapped and freed: nothing is out, so waiting returns at once.
  (void)map_values(*second, kMax);
  (void)map_values(*third, kMax);
  segments.wait_returned(std::chrono::minutes(10));
}

TEST(SharedMemoryValues, ARefLargerThanTheLimitIsRefused) {
  ResultSegments segments;
  auto ref = segments.lend(values_of(300000, 'x'));
  ASSERT_TRUE(ref.has_value());
  EXPECT_THROW(map_values(*ref, 1000), std::runtime_error);
}

}  // namespace
