#include "common/shm.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include "mqpool/codec.hpp"
#include "mqpool/errors.hpp"

namespace mqpool::shm {

namespace {

static_assert(sizeof(Ref) == 40, "a Ref travels as its 40 bytes");

// A Ref among a chunk's arguments: a msgpack ext 8 object of this type holding the 40
// bytes. Values travel as kValuesTag and the 40 bytes: 0xc1 is the one byte msgpack never
// uses, so no values frame of any encoder starts with it.
constexpr unsigned char kExt8 = 0xc7;
constexpr signed char kArgsType = 77;
constexpr std::size_t kArgRefBytes = 3 + sizeof(Ref);
constexpr unsigned char kValuesTag = 0xc1;
constexpr std::size_t kValuesRefBytes = 1 + sizeof(Ref);

// Every segment starts with a header; its bytes follow at kDataAt.
constexpr std::size_t kDataAt = 64;
// An argument segment's header: the executors reading it (kWriting while the client
// writes it), and the generation of what it holds.
struct ArgHeader {
  std::atomic<std::uint32_t> readers;
  std::atomic<std::uint64_t> generation;
};
constexpr std::uint32_t kWriting = 1U << 31;
// A values segment's header: 1 while it is lent to the client.
using Flag = std::atomic<std::uint32_t>;
static_assert(Flag::is_always_lock_free && std::atomic<std::uint64_t>::is_always_lock_free,
              "the headers are shared between processes");

// Free argument segments kept for reuse, in bytes; beyond that they are closed.
constexpr std::size_t kKeptArgBytes = std::size_t{64} << 20;
// Mappings a reader keeps: a few per peer for the peers of a busy pool.
constexpr std::size_t kKeptMappings = 16;

[[noreturn]] void fail_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

int new_memfd(const char* name) {
  const int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) fail_errno("mqpool: memfd_create");
  return fd;
}

std::uint64_t inode_of(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) fail_errno("mqpool: fstat");
  return st.st_ino;
}

// Grows (or first sizes) the memfd `fd` to `capacity` bytes and maps it anew in place of
// `base` (nullptr: not mapped yet).
char* resize(int fd, char* base, std::size_t old_capacity, std::size_t capacity) {
  if (base != nullptr) munmap(base, old_capacity);
  if (ftruncate(fd, static_cast<off_t>(capacity)) != 0) fail_errno("mqpool: ftruncate");
  void* p = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) fail_errno("mqpool: mmap of shared memory");
  return static_cast<char*>(p);
}

// Whole 64 KiB steps, so that sizes that grow a little do not remap every time. Not
// more: a reader's mapping populates the whole segment, and a memfd has no huge pages.
std::size_t capacity_for(std::size_t need) {
  constexpr std::size_t kStep = std::size_t{64} << 10;
  return (need + kStep - 1) / kStep * kStep;
}

bool args_ref_at(const unsigned char* p) {
  return p[0] == kExt8 && p[1] == sizeof(Ref) && static_cast<signed char>(p[2]) == kArgsType;
}

Ref read_ref(const char* p) {
  Ref r;
  std::memcpy(&r, p, sizeof r);
  return r;
}

std::string open_error(const Ref& r) {
  return "cannot open the shared memory of process " + std::to_string(r.pid) + ": " +
         std::strerror(errno);
}

}  // namespace

// ---- the client's argument segments ----

ArgSegments::Lease& ArgSegments::Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    if (owner_ != nullptr) owner_->release(index_);
    owner_ = std::exchange(o.owner_, nullptr);
    index_ = o.index_;
    refs_ = std::move(o.refs_);
  }
  return *this;
}

ArgSegments::Lease::~Lease() {
  if (owner_ != nullptr) owner_->release(index_);
}

ArgSegments::~ArgSegments() {
  for (Segment& s : segments_) drop(s);
}

void ArgSegments::drop(Segment& s) noexcept {
  if (s.fd < 0) return;
  munmap(s.base, s.capacity);
  ::close(s.fd);
  s = Segment{};
}

// A segment of at least `need` bytes that no executor reads, marked kWriting. One that
// is free here but still counts a reader has a reader that died, or is about to be
// stopped, with it mapped: it is closed (its reader's mapping keeps the memory alive).
std::size_t ArgSegments::acquire(std::size_t need) {
  std::size_t pick = segments_.size();
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    Segment& s = segments_[i];
    if (s.fd < 0 || s.leased) continue;
    std::uint32_t idle = 0;
    if (!reinterpret_cast<ArgHeader*>(s.base)->readers.compare_exchange_strong(idle, kWriting)) {
      drop(s);
      continue;
    }
    if (pick == segments_.size() && s.capacity >= need) {
      pick = i;
      continue;
    }
    reinterpret_cast<ArgHeader*>(s.base)->readers.fetch_sub(kWriting);  // not this one
  }
  if (pick < segments_.size()) return pick;
  for (pick = 0; pick < segments_.size() && segments_[pick].fd >= 0;) ++pick;
  if (pick == segments_.size()) segments_.emplace_back();
  Segment& s = segments_[pick];
  s.fd = new_memfd("mqpool-args");
  try {
    s.inode = inode_of(s.fd);
    s.base = resize(s.fd, nullptr, 0, capacity_for(need));
  } catch (...) {
    ::close(s.fd);
    s = Segment{};
    throw;
  }
  s.capacity = capacity_for(need);
  reinterpret_cast<ArgHeader*>(s.base)->readers.store(kWriting);
  return pick;
}

ArgSegments::Lease ArgSegments::write(const char* args, std::size_t size, std::uint32_t count) {
  const std::vector<std::size_t> sizes = detail::object_sizes(args, size, count);
  const std::size_t index = acquire(kDataAt + size);
  Segment& s = segments_[index];
  auto* header = reinterpret_cast<ArgHeader*>(s.base);
  const std::uint64_t generation = header->generation.load() + 1;
  header->generation.store(generation);
  // pwrite(2), not the mapping: the kernel fills fresh pages without a fault for each.
  for (std::size_t done = 0; done < size;) {
    const ssize_t k = ::pwrite(s.fd, args + done, size - done, static_cast<off_t>(kDataAt + done));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      header->readers.fetch_sub(kWriting);
      fail_errno("mqpool: write to shared memory");
    }
    done += static_cast<std::size_t>(k);
  }
  // Readers that came in while kWriting was set have counted themselves, and will see
  // the new generation and leave again.
  header->readers.fetch_sub(kWriting, std::memory_order_release);
  s.leased = true;
  Lease lease;
  lease.owner_ = this;
  lease.index_ = index;
  Ref r{static_cast<std::uint32_t>(getpid()), s.fd, s.inode, kDataAt, 0, generation};
  lease.refs_.resize(count * kArgRefBytes);
  char* out = lease.refs_.data();
  for (const std::size_t n : sizes) {
    r.size = n;
    out[0] = static_cast<char>(kExt8);
    out[1] = static_cast<char>(sizeof(Ref));
    out[2] = kArgsType;
    std::memcpy(out + 3, &r, sizeof r);
    out += kArgRefBytes;
    r.offset += n;
  }
  return lease;
}

void ArgSegments::release(std::size_t index) noexcept {
  Segment& s = segments_[index];
  s.leased = false;
  std::size_t kept = 0;
  for (const Segment& o : segments_)
    if (o.fd >= 0 && !o.leased) kept += o.capacity;
  if (kept > kKeptArgBytes) drop(s);
}

// ---- a reader's mappings ----

struct Mappings::Mapping {
  char* base = nullptr;
  std::size_t length = 0;
  std::uint64_t last_use = 0;
  ~Mapping() {
    if (base != nullptr) munmap(base, length);
  }
};

Mappings::Mappings() = default;
Mappings::~Mappings() = default;

std::shared_ptr<Mappings::Mapping> Mappings::get(const Ref& r, std::uint64_t need, bool writable) {
  const Key key{r.pid, r.fd, r.inode};
  if (auto it = kept_.find(key); it != kept_.end() && it->second->length >= need) {
    it->second->last_use = ++uses_;
    return it->second;
  }
  const std::string path = "/proc/" + std::to_string(r.pid) + "/fd/" + std::to_string(r.fd);
  const int fd = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_ino != r.inode ||
      static_cast<std::uint64_t>(st.st_size) < need) {
    ::close(fd);
    errno = ESTALE;
    return nullptr;
  }
  const auto length = static_cast<std::size_t>(st.st_size);
  void* p = mmap(nullptr, length, PROT_READ | (writable ? PROT_WRITE : 0),
                 MAP_SHARED | MAP_POPULATE, fd, 0);
  const int saved = errno;
  ::close(fd);
  errno = saved;
  if (p == MAP_FAILED) return nullptr;
  auto m = std::make_shared<Mapping>();
  m->base = static_cast<char*>(p);
  m->length = length;
  m->last_use = ++uses_;
  kept_[key] = m;
  if (kept_.size() > kKeptMappings)
    kept_.erase(
        std::ranges::min_element(kept_, {}, [](const auto& kv) { return kv.second->last_use; }));
  return m;
}

namespace {

// What a mapped frame holds: its mapping (unmapped with the last holder, on any thread)
// and the header word to update when the frame is freed.
struct Hold {
  std::shared_ptr<Mappings::Mapping> mapping;
};

void end_read(void* /*data*/, void* hint) noexcept {
  auto* h = static_cast<Hold*>(hint);
  reinterpret_cast<ArgHeader*>(h->mapping->base)->readers.fetch_sub(1, std::memory_order_release);
  delete h;
}

// Hands an executor's segment back (its flag to 0, and a wake-up for an executor that
// waits to leave).
void give_back(void* /*data*/, void* hint) noexcept {
  auto* h = static_cast<Hold*>(hint);
  auto* flag = reinterpret_cast<Flag*>(h->mapping->base);
  flag->store(0, std::memory_order_release);
  syscall(SYS_futex, flag, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  delete h;
}

}  // namespace

bool is_args_ref(const zmq::message_t& frame) {
  return frame.size() >= kArgRefBytes && args_ref_at(frame.data<unsigned char>());
}

namespace {

// The first of a frame's Refs, once all of them are checked to name consecutive bytes of
// one generation of one memfd of `client`; `end` is where the last one ends.
Ref check_args(const zmq::message_t& frame, pid_t client, std::uint64_t& end) {
  const std::size_t n = frame.size() / kArgRefBytes;
  if (n == 0 || frame.size() % kArgRefBytes != 0)
    throw SerializationError("a shared-memory argument frame of " + std::to_string(frame.size()) +
                             " bytes");
  const auto* p = frame.data<char>();
  const Ref first = read_ref(p + 3);
  end = first.offset;
  for (std::size_t i = 0; i < n; ++i) {
    const Ref r = read_ref(p + i * kArgRefBytes + 3);
    if (!args_ref_at(reinterpret_cast<const unsigned char*>(p) + i * kArgRefBytes) ||
        r.pid != first.pid || r.fd != first.fd || r.inode != first.inode ||
        r.generation != first.generation || r.offset != end || r.size > UINT32_MAX)
      throw SerializationError(
          "shared-memory arguments that are not consecutive bytes of one memfd");
    end += r.size;
  }
  if (first.pid != static_cast<std::uint32_t>(client))
    throw SerializationError("shared-memory arguments of process " + std::to_string(first.pid) +
                             ", not of this pool's client");
  if (first.offset < kDataAt) throw SerializationError("shared-memory arguments inside a header");
  return first;
}

}  // namespace

zmq::message_t map_args(const zmq::message_t& frame, pid_t client, std::int64_t max_bytes,
                        Mappings& mappings) {
  std::uint64_t end = 0;
  const Ref first = check_args(frame, client, end);
  if (end - first.offset > static_cast<std::uint64_t>(max_bytes))
    throw SerializationError("shared-memory arguments larger than the largest message allowed");
  // Writable: the reader counts itself in the header.
  auto mapping = mappings.get(first, end, true);
  if (!mapping) throw SerializationError(open_error(first));
  auto* header = reinterpret_cast<ArgHeader*>(mapping->base);
  const std::uint32_t before = header->readers.fetch_add(1, std::memory_order_acquire);
  if ((before & kWriting) != 0 ||
      header->generation.load(std::memory_order_acquire) != first.generation) {
    header->readers.fetch_sub(1, std::memory_order_release);
    throw SerializationError("shared-memory arguments already answered and written over");
  }
  char* data = mapping->base + first.offset;
  return zmq::message_t(data, end - first.offset, end_read, new Hold{std::move(mapping)});
}

ResultSegments::~ResultSegments() {
  for (const Segment& s : segments_) {
    if (s.base != nullptr) munmap(s.base, s.capacity);
    ::close(s.fd);
  }
}

ResultSegments::Segment* ResultSegments::free_segment(std::size_t need) {
  Segment* spare = nullptr;
  for (Segment& s : segments_) {
    if (reinterpret_cast<Flag*>(s.base)->load(std::memory_order_acquire) != 0) continue;
    if (s.capacity >= need) return &s;
    spare = &s;
  }
  if (spare == nullptr) {
    if (segments_.size() >= kMaxSegments) return nullptr;
    const int fd = new_memfd("mqpool-values");
    segments_.push_back(Segment{fd, nullptr, 0, inode_of(fd)});
    spare = &segments_.back();
  }
  const std::size_t capacity = capacity_for(need);
  char* old = std::exchange(spare->base, nullptr);
  const std::size_t old_capacity = std::exchange(spare->capacity, 0);
  spare->base = resize(spare->fd, old, old_capacity, capacity);
  spare->capacity = capacity;
  return spare;
}

std::optional<zmq::message_t> ResultSegments::lend(const detail::Buffer& values) {
  Segment* s = free_segment(kDataAt + values.size());
  if (s == nullptr) return std::nullopt;
  std::memcpy(s->base + kDataAt, values.data(), values.size());
  reinterpret_cast<Flag*>(s->base)->store(1, std::memory_order_release);
  const Ref r{static_cast<std::uint32_t>(getpid()), s->fd, s->inode, kDataAt, values.size(), 0};
  zmq::message_t frame(kValuesRefBytes);
  auto* out = frame.data<char>();
  out[0] = static_cast<char>(kValuesTag);
  std::memcpy(out + 1, &r, sizeof r);
  return frame;
}

void ResultSegments::wait_returned(std::chrono::milliseconds limit) const {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (const Segment& s : segments_) {
    auto* flag = reinterpret_cast<Flag*>(s.base);
    while (flag->load(std::memory_order_acquire) != 0) {
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero()) return;
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      const timespec ts{static_cast<time_t>(ns / 1'000'000'000),
                        static_cast<long>(ns % 1'000'000'000)};
      syscall(SYS_futex, flag, FUTEX_WAIT, 1, &ts, nullptr, 0);
    }
  }
}

bool is_values_ref(const zmq::message_t& frame) {
  return frame.size() == kValuesRefBytes && *frame.data<unsigned char>() == kValuesTag;
}

zmq::message_t map_values(const zmq::message_t& frame, std::int64_t max_bytes, Mappings& mappings) {
  const Ref r = read_ref(frame.data<char>() + 1);
  if (r.offset != kDataAt || r.size > static_cast<std::uint64_t>(max_bytes))
    throw std::runtime_error("a shared-memory result that does not check out");
  auto mapping = mappings.get(r, r.offset + r.size, true);
  if (!mapping) throw std::runtime_error(open_error(r));
  char* data = mapping->base + r.offset;
  return zmq::message_t(data, r.size, give_back, new Hold{std::move(mapping)});
}

}  // namespace mqpool::shm
