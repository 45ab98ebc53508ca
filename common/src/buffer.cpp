#include "mqpool/buffer.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "common/fork_clean.hpp"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // Linux 6.1; glibc 2.36's headers do not name it yet
#endif

namespace mqpool::detail {

namespace {
std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// Large buffers: a mapping of whole huge pages at a 2 MiB-aligned address (over-map,
// then unmap the slack on either side).
char* map_huge(std::size_t bytes) {
  void* raw =
      mmap(nullptr, bytes + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<std::uintptr_t>(raw);
  const auto aligned = round_up(start, kHugePage);
  if (aligned > start) munmap(raw, aligned - start);
  if (const auto tail = start + kHugePage - aligned; tail > 0)
    munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  (void)madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
  return reinterpret_cast<char*>(aligned);
}

// Large mappings freed lately, kept for the next large buffers: memory the kernel hands
// out fresh is zeroed first, which costs more than the copy that fills it, and large
// payloads come one after another (a map's chunks, an executor's results). Freed on any
// thread (ZeroMQ's I/O thread frees sent frames), hence the lock.
class Recycled {
 public:
  std::mutex& mutex() { return mutex_; }
  static constexpr std::size_t kMaxBytes = std::size_t{64} << 20;

  // A kept mapping of at least `capacity` bytes and at most twice that, or nullptr.
  char* take(std::size_t& capacity) {
    const std::lock_guard lock(mutex_);
    for (auto it = kept_.begin(); it != kept_.end(); ++it) {
      if (it->second < capacity || it->second > 2 * capacity) continue;
      char* p = it->first;
      capacity = it->second;
      bytes_ -= capacity;
      kept_.erase(it);
      return p;
    }
    return nullptr;
  }
  // Keeps the mapping, or unmaps it when the cache is full.
  void give(char* p, std::size_t capacity) noexcept {
    {
      const std::lock_guard lock(mutex_);
      if (bytes_ + capacity <= kMaxBytes && kept_.size() < kept_.capacity()) {
        kept_.emplace_back(p, capacity);
        bytes_ += capacity;
        return;
      }
    }
    munmap(p, capacity);
  }
  Recycled() { kept_.reserve(16); }  // give() never allocates

 private:
  std::mutex mutex_;
  std::vector<std::pair<char*, std::size_t>> kept_;
  std::size_t bytes_ = 0;
};

// Never destroyed: buffers may be freed while the process exits.
Recycled& recycled() {
  static auto* r = new Recycled;
  return *r;
}

// Returns the capacity actually reserved (whole huge pages for large buffers).
char* allocate(std::size_t& capacity) {
  if (capacity >= Buffer::kHugeFrom) {
    capacity = round_up(capacity, kHugePage);
    if (char* p = recycled().take(capacity)) return p;
    return map_huge(capacity);
  }
  capacity = std::max<std::size_t>(capacity, 64);
  auto* p = static_cast<char*>(std::malloc(capacity));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

// Own memory of `capacity` bytes from allocate().
void free_own(void* data, std::size_t capacity) noexcept {
  if (data == nullptr) return;
  if (capacity >= Buffer::kHugeFrom)
    recycled().give(static_cast<char*>(data), capacity);
  else
    std::free(data);
}
}  // namespace

std::mutex& buffer_cache_mutex() { return recycled().mutex(); }

// The head of a block's mapping; the buffers carved from it follow.
struct Block {
  std::atomic<std::size_t> refs{1};  // the arena's, and one per buffer
  std::size_t used = kBlockHead;     // bytes carved so far, from the mapping's start
  static constexpr std::size_t kBlockHead = 64;

  static Block* make() { return new (map_huge(kHugePage)) Block; }
  char* base() noexcept { return reinterpret_cast<char*>(this); }
  static void unref(Block* b) noexcept {
    if (b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      b->~Block();
      munmap(b, kHugePage);
    }
  }
};

Buffer::Buffer(std::size_t capacity) : capacity_(capacity) { data_ = allocate(capacity_); }

void Buffer::grow(std::size_t need) {
  std::size_t capacity = std::max(need, 2 * capacity_);
  char* p = allocate(capacity);
  if (size_ > 0) std::memcpy(p, data_, size_);
  drop();
  data_ = p;
  capacity_ = capacity;
}

void Buffer::drop() noexcept {
  if (block_ != nullptr)
    Block::unref(std::exchange(block_, nullptr));
  else
    free_own(data_, capacity_);
}

Buffer::Released Buffer::release() noexcept {
  Released r{data_, size_, nullptr, nullptr};
  if (block_ != nullptr) {
    r.free = [](void*, void* block) noexcept { Block::unref(static_cast<Block*>(block)); };
    r.hint = block_;
  } else {
    r.free = [](void* p, void* cap) noexcept { free_own(p, reinterpret_cast<std::size_t>(cap)); };
    r.hint = reinterpret_cast<void*>(capacity_);
  }
  data_ = nullptr;
  block_ = nullptr;
  size_ = capacity_ = 0;
  return r;
}

BufferArena::~BufferArena() {
  if (block_ != nullptr) Block::unref(block_);
}

Buffer BufferArena::take(std::size_t capacity) {
  capacity = round_up(std::max<std::size_t>(capacity, 64), 16);
  if (taken_++ == 0 || capacity > kHugePage / 8) return Buffer(capacity);
  if (block_ == nullptr || kHugePage - block_->used < capacity) {
    Block* fresh = Block::make();
    if (block_ != nullptr) Block::unref(block_);
    block_ = fresh;
  }
  char* p = block_->base() + block_->used;
  block_->used += capacity;
  block_->refs.fetch_add(1, std::memory_order_relaxed);
  return Buffer(p, capacity, block_);
}

void BufferArena::trim(Buffer& b) noexcept {
  if (b.block_ == nullptr || b.block_ != block_) return;
  const std::size_t end = static_cast<std::size_t>(b.data_ - block_->base());
  if (end + b.capacity_ != block_->used) return;
  b.capacity_ = round_up(b.size_, 16);
  block_->used = end + b.capacity_;
}

void prefer_huge_pages(void* p, std::size_t bytes) noexcept {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  // Memory that starts a few bytes into a huge page is an allocation with a mapping of
  // its own (see huge_capacity): that huge page is ours, and so is one that it ends a few
  // bytes before. The allocator's header already put a small page into the first huge
  // page, so the kernel will not fault a huge one in there: collapse it now (Linux 6.1
  // and later; older kernels refuse, harmlessly).
  const bool own = at % kHugePage < 4096;
  const auto begin = own ? at / kHugePage * kHugePage : round_up(at, kHugePage);
  auto end = (at + bytes) / kHugePage * kHugePage;
  if (own && (at + bytes) % kHugePage > kHugePage - 4096) end += kHugePage;
  if (end < begin + kHugePage) return;
  (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  if (own) (void)madvise(reinterpret_cast<void*>(begin), kHugePage, MADV_COLLAPSE);
}

}  // namespace mqpool::detail
