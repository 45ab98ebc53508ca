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
//   Arguments: the client copies each large chunk into one of its memfds (ArgSegments)
//   and keeps it until every task of the chunk has its outcome (Session's sent chunks).
//   The frame holds one Ref per task, as msgpack ext objects, so the broker still cuts
//   it at task boundaries. The executor opens /proc/<client>/fd/<fd> and maps it
//   read-only. A segment is written again only once no executor reads it: each reader
//   counts itself in the segment's header, and a Ref names the generation it was
//   written for, so a reader that comes too late sees that it did.
//   Values: the executor writes into one of a few memfds of its own (ResultSegments),
//   lent to the client until it has decoded them; the frame holds one Ref. The client
//   opens /proc/<executor>/fd/<fd>, maps it, and hands it back when the frame is freed.
//
// Both readers keep their mappings (Mappings) for the next chunk: memory the kernel
// maps afresh costs page-table work for every page, each time.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "mqpool/buffer.hpp"

namespace mqpool::shm {

// Bytes [offset, offset + size) of the memfd open as `fd` in process `pid`; `inode`
// tells it apart from whatever that descriptor number may hold later, `generation` the
// contents it was written with from later ones (arguments; 0 for values).
struct Ref {
  std::uint32_t pid = 0;
  std::int32_t fd = -1;
  std::uint64_t inode = 0;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::uint64_t generation = 0;
};

// The client's memfds for arguments. Driver thread only.
class ArgSegments {
 public:
  // A segment holding one chunk's arguments, until destroyed (the chunk is answered).
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& o) noexcept
        : owner_(std::exchange(o.owner_, nullptr)), index_(o.index_), refs_(std::move(o.refs_)) {}
    Lease& operator=(Lease&& o) noexcept;
    ~Lease();
    explicit operator bool() const { return owner_ != nullptr; }
    // The Refs, one per task, that stand for the arguments.
    zmq::message_t frame() const { return zmq::message_t(refs_.data(), refs_.size()); }

   private:
    friend class ArgSegments;
    ArgSegments* owner_ = nullptr;
    std::size_t index_ = 0;
    std::vector<char> refs_;
  };

  ArgSegments() = default;
  ~ArgSegments();
  ArgSegments(const ArgSegments&) = delete;
  ArgSegments& operator=(const ArgSegments&) = delete;

  // Copies `size` bytes of encoded argument tuples of `count` tasks into a free segment.
  // Throws SerializationError if the bytes are not `count` objects, std::system_error if
  // the kernel refuses the memory. Every Lease must end before this object.
  Lease write(const char* args, std::size_t size, std::uint32_t count);

 private:
  struct Segment {
    int fd = -1;  // -1: an empty slot
    char* base = nullptr;
    std::size_t capacity = 0;
    std::uint64_t inode = 0;
    bool leased = false;
  };
  std::size_t acquire(std::size_t need);
  void release(std::size_t index) noexcept;
  void drop(Segment& s) noexcept;
  std::vector<Segment> segments_;
};

// A reader's mappings of its peers' memfds, kept for reuse (the few latest). Not
// thread-safe; the frames made from them may be freed on any thread.
class Mappings {
 public:
  struct Mapping;
  Mappings();
  ~Mappings();
  Mappings(const Mappings&) = delete;
  Mappings& operator=(const Mappings&) = delete;

  // The mapping of the memfd `r` names, at least `need` bytes long; nullptr with errno
  // set if it cannot be opened (its process is gone, or the descriptor now holds
  // something else).
  std::shared_ptr<Mapping> get(const Ref& r, std::uint64_t need, bool writable);

 private:
  using Key = std::tuple<std::uint32_t, std::int32_t, std::uint64_t>;
  std::map<Key, std::shared_ptr<Mapping>> kept_;
  std::uint64_t uses_ = 0;
};

// True if `frame` is a chunk's arguments as Refs (its first object is a Ref; an
// argument tuple is always an array).
bool is_args_ref(const zmq::message_t& frame);

// The arguments a Refs frame stands for, read in place from `client`'s memfd, as a frame
// whose freeing ends the read. Throws SerializationError if the Refs do not name
// consecutive bytes of one memfd of `client` within `max_bytes`, the memfd cannot be
// opened (the client is gone), or it holds other arguments by now (the chunk was
// answered meanwhile: this executor is about to be stopped).
zmq::message_t map_args(const zmq::message_t& frame, pid_t client, std::int64_t max_bytes,
                        Mappings& mappings);

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

// The values a Ref names, read in place from the executor's memfd, as a frame whose
// freeing hands the segment back. Throws std::runtime_error if the executor is gone (it
// was killed after it answered) or the Ref does not check out.
zmq::message_t map_values(const zmq::message_t& frame, std::int64_t max_bytes, Mappings& mappings);

}  // namespace mqpool::shm
