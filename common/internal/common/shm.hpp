// Large payloads through shared memory, between the processes of one local pool
// (docs/ARCHITECTURE.md, "Large payloads"). A chunk's arguments, or its values, of at
// least PoolOptions::shared_memory_threshold bytes are written into a memfd; the frame
// that ZeroMQ carries holds only where they lie (a Ref), and the receiver maps the
// bytes and decodes them in place.
//
// A memfd has no name in any file system: the kernel frees it when the last descriptor
// and mapping of it are gone, whichever process holds them and however it ends. So
// nothing is left behind by a crash, and nothing is freed twice.
//
//   Arguments: the client writes each large chunk into a fresh memfd of its own and keeps
//   it until every task of the chunk has its outcome (Session's sent chunks). The frame
//   holds one Ref per task, as msgpack ext objects, so the broker still cuts it at task
//   boundaries. The executor opens /proc/<client>/fd/<fd> and maps it read-only.
//   Values: the executor writes into one of a few memfds of its own (ResultSegments),
//   lent to the client until it has decoded them; the frame holds one Ref. The client
//   opens /proc/<executor>/fd/<fd>, maps it, and hands it back when the frame is freed.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>
#include <zmq.hpp>

#include "mqpool/buffer.hpp"

namespace mqpool::shm {

// Bytes [offset, offset + size) of the memfd open as `fd` in process `pid`; `inode`
// tells it apart from whatever that descriptor number may hold later.
struct Ref {
  std::uint32_t pid = 0;
  std::int32_t fd = -1;
  std::uint64_t inode = 0;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

// The client's copy of one chunk's arguments. Only its descriptor stays open (the
// writer's mapping is gone once the bytes are in); destroying it closes that.
class ArgSegment {
 public:
  // Writes `size` bytes of encoded argument tuples of `count` tasks into a fresh memfd,
  // and makes the frame of Refs, one per task, that stands for them. Throws
  // SerializationError if the bytes are not `count` objects, std::system_error if the
  // kernel refuses the memory.
  ArgSegment(const char* args, std::size_t size, std::uint32_t count);
  ~ArgSegment();
  ArgSegment(const ArgSegment&) = delete;
  ArgSegment& operator=(const ArgSegment&) = delete;

  zmq::message_t frame() const;

 private:
  int fd_ = -1;
  std::vector<char> refs_;
};

// True if `frame` is a chunk's arguments as Refs (its first object is a Ref; an
// argument tuple is always an array).
bool is_args_ref(const zmq::message_t& frame);

// The arguments a Refs frame stands for, mapped read-only from `client`'s memfd, as a
// frame whose freeing unmaps them. Throws SerializationError if the Refs do not name
// consecutive bytes of one memfd of `client` within `max_bytes`, or the memfd cannot be
// opened (the client is gone).
zmq::message_t map_args(const zmq::message_t& frame, pid_t client, std::int64_t max_bytes);

// An executor's memfds for values. Each is lent to the client with the frame that names
// it and comes back when the client has decoded it; a value is never written over
// bytes the client may still be reading.
class ResultSegments {
 public:
  ResultSegments() = default;
  ~ResultSegments();
  ResultSegments(const ResultSegments&) = delete;
  ResultSegments& operator=(const ResultSegments&) = delete;

  // The frame that lends `values` to the client through a free segment, or nothing
  // when every segment is out on loan (the values then travel inline).
  std::optional<zmq::message_t> lend(const detail::Buffer& values);
  // Waits until the client has handed back every segment, or `limit` has passed: an
  // executor that leaves (maxtasksperchild) must not take its last values with it.
  void wait_returned(std::chrono::milliseconds limit) const;

 private:
  struct Segment {
    int fd = -1;
    char* base = nullptr;
    std::size_t capacity = 0;  // bytes of the mapping, its header included
    std::uint64_t inode = 0;
  };
  static constexpr std::size_t kMaxSegments = 3;

  Segment* free_segment(std::size_t need);
  std::vector<Segment> segments_;
};

// True if `frame` is a values frame that names an executor's segment.
bool is_values_ref(const zmq::message_t& frame);

// The values a Ref names, mapped from the executor's memfd, as a frame whose freeing
// hands the segment back. Throws std::runtime_error if the executor is gone (it was
// killed after it answered) or the Ref does not check out.
zmq::message_t map_values(const zmq::message_t& frame, std::int64_t max_bytes);

}  // namespace mqpool::shm
