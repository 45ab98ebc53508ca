// ResultStream<R>: the results of imap / imap_unordered, as an input range.
#pragma once

#include <chrono>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>

#include "mqpool/detail/jobs.hpp"

namespace mqpool {

// Results of imap (task order) or imap_unordered (completion order). Reads its input
// lazily: at most a bounded window of tasks is in flight, and input is read only as
// results are taken. Move-only; not thread-safe (one consumer).
template <class R>
class ResultStream {
 public:
  // Adds the next input's task to the writer; false when the input has ended.
  using Pull = std::function<bool(detail::ChunkWriter&)>;

  // Made by Pool::imap / imap_unordered, not by users: reads and submits the first
  // window of input, so it throws what they throw.
  ResultStream(std::shared_ptr<detail::PoolCore> core, std::string fn, bool ordered,
               std::uint32_t chunksize, std::uint64_t window, Pull pull)
      : core_(std::move(core)),
        fn_(std::move(fn)),
        job_(std::make_shared<detail::StreamJob<R>>(ordered, fn_)),
        writer_(chunksize, 0, detail::first_index(*core_)),
        window_(std::max<std::uint64_t>(window, chunksize)),
        pull_(std::move(pull)) {
    id_ = detail::new_job(*core_);
    job_->next_index = writer_.next();
    top_up();
  }
  ResultStream(ResultStream&&) noexcept = default;
  ResultStream& operator=(ResultStream&&) noexcept = default;
  // Stops reading input; does not block or throw. Tasks already sent still run (join()
  // waits for them) and their results are dropped. The last stream of a destroyed Pool
  // closes and joins it here, so then this blocks as ~Pool does.
  ~ResultStream() {
    if (core_ && !last_sent_) {
      try {  // stop reading input; outcomes still in flight are dropped on arrival
        detail::submit(*core_, id_, job_, fn_, {}, true);
      } catch (...) {
      }
    }
  }

  // The next result, blocking up to `timeout`; empty at the end. Throws the task's error
  // at its position (imap) or when it arrives (imap_unordered), and TimeoutError if
  // nothing comes in time; the stream stays usable after either. An exception from the
  // input range reaches the call that read it; the stream then yields the results of
  // the inputs read before it, and ends. PoolStateError after terminate(), or after
  // join() cut the input short (docs/API.md, ResultStream).
  std::optional<detail::Value<R>> next(std::chrono::milliseconds timeout) {
    return next_until(std::chrono::steady_clock::now() + timeout, true);
  }

  class iterator {
   public:
    using value_type = detail::Value<R>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(ResultStream* s) : s_(s) { ++*this; }
    // As for any iterator, dereferencing the end is undefined: no check on the hot path.
    const value_type& operator*() const {
      return *cur_;  // NOLINT(bugprone-unchecked-optional-access)
    }
    iterator& operator++() {
      cur_ = s_->next_until(std::chrono::steady_clock::time_point::max(), false);
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !cur_.has_value(); }

   private:
    ResultStream* s_ = nullptr;
    std::optional<value_type> cur_;
  };
  // Blocks for the first result (the stream can be walked once); each ++ blocks for the
  // next, without a time limit. Both throw as next() does, never TimeoutError.
  iterator begin() { return iterator(this); }
  // std::default_sentinel: the iterator reaches it when the results have ended.
  std::default_sentinel_t end() { return {}; }

 private:
  std::optional<detail::Value<R>> next_until(std::chrono::steady_clock::time_point deadline,
                                             bool timed) {
    top_up();
    typename detail::StreamJob<R>::Outcome o;
    {
      std::unique_lock lock(job_->mu);
      auto ready = [&] { return job_->has_next() || ended() || job_->failed_with; };
      if (timed) {
        if (!job_->cv.wait_until(lock, deadline, ready))
          throw TimeoutError("ResultStream::next: no result within the timeout");
      } else {
        job_->cv.wait(lock, ready);
      }
      if (!job_->has_next()) {
        if (ended()) {
          if (!input_done_)  // stopped reading: the pool was joined or terminated
            throw PoolStateError(
                "Pool not running: this imap stream's input was not read to "
                "the end before the pool stopped");
          return std::nullopt;
        }
        std::rethrow_exception(job_->failed_with);
      }
      o = job_->take_next();
    }
    if (auto* ex = std::get_if<std::exception_ptr>(&o)) std::rethrow_exception(*ex);
    return std::get<0>(std::move(o));
  }

  // With job_->mu held: every task read from the input has been taken, and no more
  // will be read (the input ended, or the pool stopped taking work).
  bool ended() const { return (input_done_ || stopped_) && job_->next_index == writer_.next(); }

  // Keeps up to `window_` tasks in flight; reads input only in half-window batches, so
  // submissions are batched too.
  void top_up() {
    if (input_done_ || stopped_) return;
    if (!detail::accepting(*core_)) {
      stopped_ = true;  // read no input that could not be sent; yield what was
      return;
    }
    std::uint64_t taken;
    {
      std::lock_guard lock(job_->mu);
      taken = job_->next_index;
    }
    if (writer_.next() - taken > window_ / 2) return;
    std::exception_ptr input_error;
    try {
      while (writer_.next() - taken < window_) {
        if (!pull_(writer_)) {
          input_done_ = true;
          break;
        }
      }
    } catch (...) {
      // The input threw: it is read no further. What it gave goes out as the last batch
      // (the stream yields those results, then ends) and the caller gets the exception.
      input_error = std::current_exception();
      input_done_ = true;
    }
    auto chunks = writer_.take();
    {
      std::lock_guard lock(job_->mu);
      for (const auto& c : chunks)
        for (std::uint64_t i = 0; i < c.count; ++i) job_->outstanding.insert(c.first + i);
    }
    last_sent_ = input_done_;
    if (!chunks.empty() || input_done_)
      detail::submit(*core_, id_, job_, fn_, std::move(chunks), input_done_);
    if (input_error) std::rethrow_exception(input_error);
  }

  std::shared_ptr<detail::PoolCore> core_;
  std::string fn_;
  std::shared_ptr<detail::StreamJob<R>> job_;
  detail::ChunkWriter writer_;
  std::uint64_t window_;
  Pull pull_;
  std::uint64_t id_ = 0;
  bool input_done_ = false;
  bool last_sent_ = false;
  bool stopped_ = false;
};

}  // namespace mqpool
