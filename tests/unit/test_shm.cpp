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
  ArgSegments segments;
  Mappings mappings;
  const ArgSegments::Lease lease = segments.write(args.data(), args.size(), 3);
  const zmq::message_t frame = lease.frame();
  ASSERT_TRUE(is_args_ref(frame));
  EXPECT_EQ(frame.size() % 3, 0u);
  EXPECT_EQ(bytes_of(map_args(frame, getpid(), kMax, mappings)), args);
  // The broker may cut the frame at task boundaries: the last two Refs stand for the
  // last two tuples.
  const std::size_t one = frame.size() / 3;
  const zmq::message_t tail(frame.data<char>() + one, 2 * one);
  const std::string mapped = bytes_of(map_args(tail, getpid(), kMax, mappings));
  EXPECT_EQ(mapped, args.substr(args.size() - mapped.size()));
  EXPECT_LT(mapped.size(), args.size());
}

TEST(SharedMemoryRefs, AnInlineChunkIsNotARef) {
  const std::string args = three_tuples();
  EXPECT_FALSE(is_args_ref(zmq::message_t(args.data(), args.size())));
}

TEST(SharedMemoryRefs, MapArgsRefusesRefsThatDoNotCheckOut) {
  const std::string args = three_tuples();
  ArgSegments segments;
  Mappings mappings;
  const ArgSegments::Lease lease = segments.write(args.data(), args.size(), 3);
  const zmq::message_t frame = lease.frame();
  const std::size_t one = frame.size() / 3;
  // Not this pool's client.
  EXPECT_THROW(map_args(frame, getpid() + 1, kMax, mappings), SerializationError);
  // Larger than the largest message.
  EXPECT_THROW(map_args(frame, getpid(), 100, mappings), SerializationError);
  // A gap: the first and the last Ref, without the middle one.
  std::string gap(frame.data<char>(), one);
  gap.append(frame.data<char>() + 2 * one, one);
  EXPECT_THROW(map_args(zmq::message_t(gap.data(), gap.size()), getpid(), kMax, mappings),
               SerializationError);
  // A frame that is not whole Refs.
  EXPECT_THROW(map_args(zmq::message_t(frame.data<char>(), one + 1), getpid(), kMax, mappings),
               SerializationError);
}

// A segment is reused once its chunk is answered: the Refs of what it held before name
// an older generation, and a late reader is refused rather than handed other arguments.
TEST(SharedMemoryRefs, AReusedSegmentRefusesTheRefsOfWhatItHeldBefore) {
  const std::string first = three_tuples();
  std::string second = first;
  second.back() = 'x';
  ArgSegments segments;
  Mappings mappings;
  ArgSegments::Lease lease = segments.write(first.data(), first.size(), 3);
  const std::string old_refs = bytes_of(lease.frame());
  lease = {};  // the chunk is answered
  lease = segments.write(second.data(), second.size(), 3);
  const std::string new_refs = bytes_of(lease.frame());
  ASSERT_EQ(old_refs.size(), new_refs.size());
  EXPECT_EQ(old_refs.substr(0, 3 + 16), new_refs.substr(0, 3 + 16)) << "not the same memfd";
  EXPECT_THROW(map_args(zmq::message_t(old_refs.data(), old_refs.size()), getpid(), kMax, mappings),
               SerializationError);
  EXPECT_EQ(bytes_of(map_args(zmq::message_t(new_refs.data(), new_refs.size()), getpid(), kMax,
                              mappings)),
            second);
}

// A reader that still holds a segment (an executor that is to be stopped) keeps it: the
// next arguments go elsewhere, and what it reads does not change under it.
TEST(SharedMemoryRefs, ASegmentStillReadIsNotWrittenOver) {
  const std::string first = three_tuples();
  const std::string second(first.size(), '\x90');  // 0x90: an empty array, repeated
  ArgSegments segments;
  Mappings mappings;
  ArgSegments::Lease lease = segments.write(first.data(), first.size(), 3);
  const zmq::message_t reading = map_args(lease.frame(), getpid(), kMax, mappings);
  lease = segments.write(second.data(), second.size(), static_cast<std::uint32_t>(second.size()));
  EXPECT_EQ(bytes_of(reading), first);
  EXPECT_EQ(bytes_of(map_args(lease.frame(), getpid(), kMax, mappings)), second);
}

TEST(SharedMemoryRefs, AClosedSegmentCannotBeMappedEvenIfItsNumberIsReused) {
  const std::string args = three_tuples();
  std::string frame;
  {
    ArgSegments segments;
    frame = bytes_of(segments.write(args.data(), args.size(), 3).frame());
  }
  Mappings mappings;
  EXPECT_THROW(map_args(zmq::message_t(frame.data(), frame.size()), getpid(), kMax, mappings),
               SerializationError);
  // The descriptor's number now names another memfd: its inode tells them apart.
  const int other = memfd_create("other", MFD_CLOEXEC);
  ASSERT_GE(other, 0);
  ASSERT_EQ(ftruncate(other, 1 << 20), 0);
  EXPECT_THROW(map_args(zmq::message_t(frame.data(), frame.size()), getpid(), kMax, mappings),
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
  Mappings mappings;
  std::optional<zmq::message_t> mapped = map_values(*ref, kMax, mappings);
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
  EXPECT_EQ(bytes_of(map_values(*again, kMax, mappings)), std::string(5000, 'v'));
  // Every segment mapped and freed: nothing is out, so waiting returns at once.
  (void)map_values(*second, kMax, mappings);
  (void)map_values(*third, kMax, mappings);
  segments.wait_returned(std::chrono::minutes(10));
}

TEST(SharedMemoryValues, ARefLargerThanTheLimitIsRefused) {
  ResultSegments segments;
  auto ref = segments.lend(values_of(300000, 'x'));
  ASSERT_TRUE(ref.has_value());
  Mappings mappings;
  EXPECT_THROW(map_values(*ref, 1000, mappings), std::runtime_error);
}

}  // namespace
