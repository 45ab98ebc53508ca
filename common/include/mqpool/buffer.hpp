// The bytes of one outgoing frame: msgpack's packer writes into a Buffer.
#pragma once

#include <cstddef>
#include <cstring>
#include <utility>

namespace mqpool::detail {

inline constexpr std::size_t kHugePage = 2 << 20;

// A growable byte buffer, like msgpack::sbuffer, except where its memory comes from:
// buffers of kHugeFrom bytes or more are placed in 2 MiB-aligned memory that the kernel
// may back with huge pages. Every fresh 4 KiB page costs a page fault, and on a virtual
// machine a fault costs more than filling the page; a huge page takes one fault for 512
// small ones (docs/PERFORMANCE.md has the measurements).
struct Block;  // buffer.cpp: a 2 MiB mapping that BufferArena carves buffers from

class Buffer {
 public:
  static constexpr std::size_t kHugeFrom = 512 << 10;

  explicit Buffer(std::size_t capacity = 256);
  Buffer(Buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        capacity_(std::exchange(o.capacity_, 0)),
        block_(std::exchange(o.block_, nullptr)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
    std::swap(block_, o.block_);
    return *this;
  }
  ~Buffer() { drop(); }

  // Room for n more bytes at tail(n); commit(k) keeps the first k of them written.
  char* tail(std::size_t n) {
    if (capacity_ - size_ < n) grow(size_ + n);
    return data_ + size_;
  }
  void commit(std::size_t k) noexcept { size_ += k; }
  void write(const char* p, std::size_t n) {
    // msgpack's packer writes an empty string or bin as (nullptr, 0), and memcpy from a
    // null pointer is undefined even for 0 bytes (UBSan, tests/unit/test_codec_hostile).
    if (n == 0) return;
    std::memcpy(tail(n), p, n);
    commit(n);
  }
  const char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }

  // Gives the memory up; whoever takes it calls free(data, hint) once (ZeroMQ's
  // zero-copy frames take exactly such a function and hint).
  struct Released {
    char* data;
    std::size_t size;
    void (*free)(void* data, void* hint) noexcept;
    void* hint;
  };
  Released release() noexcept;

 private:
  friend class BufferArena;
  Buffer(char* data, std::size_t capacity, Block* block) noexcept
      : data_(data), capacity_(capacity), block_(block) {}
  void grow(std::size_t need);
  void drop() noexcept;

  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  Block* block_ = nullptr;  // non-null: data_ lies in a block shared with other buffers
};

// Hands out buffers that are written one after another on one thread (a map's chunks of
// arguments) from shared 2 MiB blocks in huge pages, so that a million small arguments
// cost a few page faults rather than one per 4 KiB of malloc'd chunk buffers
// (docs/PERFORMANCE.md, map_tiny). Each buffer holds a reference to its block, which is
// unmapped when the last is freed, on any thread.
class BufferArena {
 public:
  BufferArena() = default;
  BufferArena(BufferArena&& o) noexcept
      : block_(std::exchange(o.block_, nullptr)), taken_(std::exchange(o.taken_, 0)) {}
  BufferArena& operator=(BufferArena&& o) noexcept {
    std::swap(block_, o.block_);
    std::swap(taken_, o.taken_);
    return *this;
  }
  ~BufferArena();

  // A buffer of at least `capacity` bytes. The first comes from the heap (a lone chunk,
  // as apply_async writes, is not worth a block); so do large ones.
  Buffer take(std::size_t capacity);
  // Gives the unwritten end of `b`, if it was the latest buffer taken, back to the block.
  void trim(Buffer& b) noexcept;

 private:
  Block* block_ = nullptr;
  std::size_t taken_ = 0;
};

// A capacity of at least n bytes for a large container that prefer_huge_pages() can back
// entirely with huge pages: glibc serves such a request with its own mapping of exactly
// a multiple of 2 MiB (its header takes 16 bytes), which the kernel places at a 2 MiB
// boundary. Only address space is spent: pages past the data are never touched.
constexpr std::size_t huge_capacity(std::size_t n) {
  return (n + 64 + kHugePage - 1) / kHugePage * kHugePage - 64;
}

// Asks the kernel to back the 2 MiB-aligned part of [p, p + bytes) with huge pages, for
// large memory that is about to be filled once (a map's results, a decoded payload).
void prefer_huge_pages(void* p, std::size_t bytes) noexcept;

// Reserves room for n elements of a container about to be filled once (a map's results,
// a decoded payload). From kHugeFrom bytes, as a mapping the kernel can back with huge
// pages, so capacity() may exceed n by up to 2 MiB.
template <class C>
void reserve_to_fill(C& c, std::size_t n) {
  constexpr std::size_t kSize = sizeof(typename C::value_type);
  if (n * kSize < Buffer::kHugeFrom) {
    c.reserve(n);
    return;
  }
  c.reserve(huge_capacity(n * kSize) / kSize);
  // Only the bytes to be filled: a huge page that they would barely enter is zeroed
  // whole when touched, for a few bytes.
  prefer_huge_pages(c.data(), n * kSize);
}

}  // namespace mqpool::detail
