// The non-template seam between Pool's templates and the client session (client/src).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mqpool/codec.hpp"

namespace mqpool::detail {

using ErrorList = std::vector<std::pair<std::uint32_t, WireError>>;

// Where the outcomes of one submission go. Tasks of a job are numbered 0..n-1; the
// session calls these on its own thread, never concurrently.
class Job {
 public:
  virtual ~Job() = default;
  // Outcomes of tasks first .. first+count-1: `values` yields one object per task (nil
  // where it failed); `errors` lists the failures by offset from `first`, in order.
  // Returns how many of them were new (a duplicate outcome is ignored).
  virtual std::uint32_t deliver(std::uint64_t first, std::uint32_t count, Reader& values,
                                const ErrorList& errors) = 0;
  // Fails every task that has no outcome yet (terminate, lost connection).
  virtual void fail(const WireError& e) = 0;
};

// Makes the exception that `e` stands for.
std::exception_ptr to_exception(const WireError& e);

// A chunk of encoded argument tuples: tasks first .. first+count-1 of its job.
struct EncodedChunk {
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  Buffer args{64};  // grows by doubling; most chunks of small tasks stay tiny
};

// Packs argument tuples into chunks of up to `chunksize` tasks and, when `byte_cap` is
// non-zero, of about that many bytes (so that results stream back).
class ChunkWriter {
 public:
  ChunkWriter(std::uint32_t chunksize, std::size_t byte_cap, std::uint64_t first = 0)
      : chunksize_(chunksize), cap_(byte_cap), next_(first) {}
  template <class Tuple>
  void add(const Tuple& args) {
    EncodedChunk& c = open();
    if constexpr (is_integer_tuple1<Tuple>()) {
      char* p = c.args.tail(10);
      p[0] = static_cast<char>(0x91);  // a one-element array: the argument tuple
      c.args.commit(1 + encode_integer(p + 1, std::get<0>(args)));
    } else {
      Packer(c.args).pack(args);
    }
    ++next_;
    ++c.count;
    close_if_full(c);
  }
  // Adds the argument tuples (p[0]), (p[1]), ... of up to n tasks in one loop, and stops
  // where the open chunk is full (map's fast path for f(int) over contiguous integers):
  // the number of tasks taken, at least one. The same bytes and the same chunks as add()
  // item by item: no pass writes past the cap, so a chunk reaches it on the same task.
  template <plain_integer T>
  std::size_t add_integers(const T* p, std::size_t n) {
    constexpr std::size_t kMax = 10;  // 0x91, then at most 9 bytes of integer
    EncodedChunk& c = open();
    std::size_t room = c.args.capacity() - c.args.size();
    if (cap_ != 0) room = std::min(room, cap_ - std::min(cap_, c.args.size()));
    const std::size_t k =
        std::min({n, std::size_t{chunksize_ - c.count}, std::max<std::size_t>(room / kMax, 1)});
    char* const begin = c.args.tail(k * kMax);
    char* out = begin;
    for (std::size_t i = 0; i < k; ++i) {
      out[0] = static_cast<char>(0x91);
      out += 1 + encode_integer(out + 1, p[i]);
    }
    c.args.commit(static_cast<std::size_t>(out - begin));
    c.count += static_cast<std::uint32_t>(k);
    next_ += k;
    close_if_full(c);
    return k;
  }
  // Index of the next task.
  std::uint64_t next() const { return next_; }
  // Chunks that are complete (all but an open last one).
  std::size_t closed() const { return chunks_.size() - (open_ ? 1 : 0); }
  // Takes the complete chunks, leaving an open one in place.
  std::vector<EncodedChunk> take_closed() {
    std::vector<EncodedChunk> out;
    if (!open_) return take();
    out.reserve(chunks_.size() - 1);
    for (std::size_t i = 0; i + 1 < chunks_.size(); ++i) out.push_back(std::move(chunks_[i]));
    chunks_.erase(chunks_.begin(), chunks_.end() - 1);
    return out;
  }
  // The chunks so far, the last one closed.
  std::vector<EncodedChunk> take() {
    if (open_) close();
    return std::exchange(chunks_, {});
  }

 private:
  EncodedChunk& open() {
    if (!open_) {
      // Sized for the whole chunk up front (a few bytes per small task, up to the byte
      // cap), so a large chunk is not copied again and again as its buffer doubles.
      const std::size_t guess =
          std::min<std::size_t>(std::size_t{chunksize_} * 8, cap_ ? cap_ + 256 : 1 << 20);
      chunks_.push_back(EncodedChunk{next_, 0, arena_.take(guess)});
      open_ = true;
    }
    return chunks_.back();
  }
  void close_if_full(const EncodedChunk& c) noexcept {
    if (c.count >= chunksize_ || (cap_ != 0 && c.args.size() >= cap_)) close();
  }
  void close() noexcept {
    arena_.trim(chunks_.back().args);
    open_ = false;
  }

  std::uint32_t chunksize_;
  std::size_t cap_;
  std::uint64_t next_;
  bool open_ = false;
  std::vector<EncodedChunk> chunks_;
  BufferArena arena_;
};

class PoolCore;  // client/src/pool_core.hpp

// The calls Pool's templates make into the non-template core. All are thread-safe.
// A new job id. Throws PoolStateError if the pool does not accept new work.
std::uint64_t new_job(PoolCore& core);
// Sends chunks of a job; `last` says no more will follow (an imap stream that ends or is
// destroyed sends an empty last batch). The session forgets the job once it is last and
// every chunk sent has its outcome. Throws PoolStateError once the workers have stopped.
void submit(PoolCore& core, std::uint64_t job_id, std::shared_ptr<Job> job, const std::string& fn,
            std::vector<EncodedChunk> chunks, bool last);
// Forgets a job whose input threw half way through its submission: its tasks already
// sent still run, and their outcomes are dropped. Never throws.
void abandon(PoolCore& core, std::uint64_t job_id) noexcept;
// False once the workers have stopped (joined or terminated): submit() would throw.
bool accepting(const PoolCore& core);
// Worker processes that the automatic chunksize divides the work among.
int workers(const PoolCore& core);
// The index of an imap stream's first task: 0 (tests start it elsewhere).
std::uint64_t first_index(const PoolCore& core);

}  // namespace mqpool::detail
