#include "common/shm.hpp"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>
#include <system_error>

#include "mqpool/codec.hpp"
#include "mqpool/errors.hpp"

namespace mqpool::shm {

namespace {

static_assert(sizeof(Ref) == 32, "a Ref travels as its 32 bytes");

// A Ref among a chunk's arguments: a msgpack ext 8 object of this type holding the 32
// bytes. Values travel as kValuesTag and the 32 bytes: 0xc1 is the one byte msgpack never
// uses, so no values frame of any encoder starts with it.
constexpr unsigned char kExt8 = 0xc7;
constexpr signed char kArgsType = 77;
constexpr std::size_t kArgRefBytes = 3 + sizeof(Ref);
constexpr unsigned char kValuesTag = 0xc1;
constexpr std::size_t kValuesRefBytes = 1 + sizeof(Ref);

// An executor's segment begins with this word: 1 while it is lent to the client. The
// values follow it at kValuesAt.
constexpr std::size_t kValuesAt = 64;
using Flag = std::atomic<std::uint32_t>;
static_assert(Flag::is_always_lock_free, "the flag is shared between processes");

const std::size_t kPage = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));

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

// Opens the memfd a Ref names, in the process that holds it; -1 with errno set if that
// process or descriptor is gone, or it now holds something else.
int open_peer(const Ref& r, int flags, std::uint64_t need) {
  const std::string path = "/proc/" + std::to_string(r.pid) + "/fd/" + std::to_string(r.fd);
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_ino != r.inode ||
      static_cast<std::uint64_t>(st.st_size) < need) {
    ::close(fd);
    errno = ESTALE;
    return -1;
  }
  return fd;
}

struct Mapping {
  char* base;
  std::size_t length;
};

void unmap(void* /*data*/, void* hint) noexcept {
  auto* m = static_cast<Mapping*>(hint);
  munmap(m->base, m->length);
  delete m;
}

// Hands an executor's segment back (its flag to 0, and a wake-up for an executor that
// waits to leave), then unmaps it.
void give_back(void* /*data*/, void* hint) noexcept {
  auto* m = static_cast<Mapping*>(hint);
  auto* flag = reinterpret_cast<Flag*>(m->base);
  flag->store(0, std::memory_order_release);
  syscall(SYS_futex, flag, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
  munmap(m->base, m->length);
  delete m;
}

// Maps [offset, offset + size) of `fd` (and whatever of its page lies before), and makes
// the frame that frees it with `free_fn`.
zmq::message_t map_frame(int fd, std::uint64_t offset, std::uint64_t size, int prot,
                         zmq::free_fn* free_fn, bool from_start) {
  const std::uint64_t start = from_start ? 0 : offset / kPage * kPage;
  const std::size_t length = offset + size - start;
  void* p = mmap(nullptr, length, prot, MAP_SHARED | MAP_POPULATE, fd, static_cast<off_t>(start));
  const int saved = errno;
  ::close(fd);
  errno = saved;
  if (p == MAP_FAILED) fail_errno("mqpool: mmap of shared memory");
  auto* m = new Mapping{static_cast<char*>(p), length};
  return zmq::message_t(m->base + (offset - start), size, free_fn, m);
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

ArgSegment::ArgSegment(const char* args, std::size_t size, std::uint32_t count) {
  const std::vector<std::size_t> sizes = detail::object_sizes(args, size, count);
  fd_ = new_memfd("mqpool-args");
  try {
    // write(2), not a mapping: the kernel fills fresh pages without a fault for each.
    for (std::size_t done = 0; done < size;) {
      const ssize_t k = ::write(fd_, args + done, size - done);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) fail_errno("mqpool: write to shared memory");
      done += static_cast<std::size_t>(k);
    }
    Ref r{static_cast<std::uint32_t>(getpid()), fd_, inode_of(fd_), 0, 0};
    refs_.resize(count * kArgRefBytes);
    char* out = refs_.data();
    for (const std::size_t n : sizes) {
      r.size = n;
      out[0] = static_cast<char>(kExt8);
      out[1] = static_cast<char>(sizeof(Ref));
      out[2] = kArgsType;
      std::memcpy(out + 3, &r, sizeof r);
      out += kArgRefBytes;
      r.offset += n;
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

ArgSegment::~ArgSegment() { ::close(fd_); }

zmq::message_t ArgSegment::frame() const { return zmq::message_t(refs_.data(), refs_.size()); }

bool is_args_ref(const zmq::message_t& frame) {
  return frame.size() >= kArgRefBytes && args_ref_at(frame.data<unsigned char>());
}

zmq::message_t map_args(const zmq::message_t& frame, pid_t client, std::int64_t max_bytes) {
  const std::size_t n = frame.size() / kArgRefBytes;
  if (n == 0 || frame.size() % kArgRefBytes != 0)
    throw SerializationError("a shared-memory argument frame of " + std::to_string(frame.size()) +
                             " bytes");
  const char* p = frame.data<char>();
  const Ref first = read_ref(p + 3);
  std::uint64_t end = first.offset;
  for (std::size_t i = 0; i < n; ++i) {
    const Ref r = read_ref(p + i * kArgRefBytes + 3);
    if (!args_ref_at(reinterpret_cast<const unsigned char*>(p) + i * kArgRefBytes) ||
        r.pid != first.pid || r.fd != first.fd || r.inode != first.inode || r.offset != end ||
        r.size > UINT32_MAX)
      throw SerializationError(
          "shared-memory arguments that are not consecutive bytes of one memfd");
    end += r.size;
  }
  if (first.pid != static_cast<std::uint32_t>(client))
    throw SerializationError("shared-memory arguments of process " + std::to_string(first.pid) +
                             ", not of this pool's client");
  if (end - first.offset > static_cast<std::uint64_t>(max_bytes))
    throw SerializationError("shared-memory arguments larger than the largest message allowed");
  const int fd = open_peer(first, O_RDONLY, end);
  if (fd < 0) throw SerializationError(open_error(first));
  return map_frame(fd, first.offset, end - first.offset, PROT_READ, unmap, false);
}

ResultSegments::~ResultSegments() {
  for (const Segment& s : segments_) {
    munmap(s.base, s.capacity);
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
  // Whole 2 MiB steps, so that sizes that grow a little do not remap every time.
  const std::size_t capacity =
      (need + detail::kHugePage - 1) / detail::kHugePage * detail::kHugePage;
  if (spare == nullptr) {
    if (segments_.size() >= kMaxSegments) return nullptr;
    const int fd = new_memfd("mqpool-values");
    segments_.push_back(Segment{fd, nullptr, 0, inode_of(fd)});
    spare = &segments_.back();
  } else {
    munmap(spare->base, spare->capacity);
    spare->base = nullptr;
  }
  if (ftruncate(spare->fd, static_cast<off_t>(capacity)) != 0) fail_errno("mqpool: ftruncate");
  void* p = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_SHARED, spare->fd, 0);
  if (p == MAP_FAILED) fail_errno("mqpool: mmap of shared memory");
  spare->base = static_cast<char*>(p);
  spare->capacity = capacity;
  return spare;
}

std::optional<zmq::message_t> ResultSegments::lend(const detail::Buffer& values) {
  Segment* s = free_segment(kValuesAt + values.size());
  if (s == nullptr) return std::nullopt;
  std::memcpy(s->base + kValuesAt, values.data(), values.size());
  reinterpret_cast<Flag*>(s->base)->store(1, std::memory_order_release);
  const Ref r{static_cast<std::uint32_t>(getpid()), s->fd, s->inode, kValuesAt, values.size()};
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

zmq::message_t map_values(const zmq::message_t& frame, std::int64_t max_bytes) {
  const Ref r = read_ref(frame.data<char>() + 1);
  if (r.offset != kValuesAt || r.size > static_cast<std::uint64_t>(max_bytes))
    throw std::runtime_error("a shared-memory result that does not check out");
  const int fd = open_peer(r, O_RDWR, r.offset + r.size);
  if (fd < 0) throw std::runtime_error(open_error(r));
  return map_frame(fd, r.offset, r.size, PROT_READ | PROT_WRITE, give_back, true);
}

}  // namespace mqpool::shm
