// Jobs: where the outcomes of apply_async, map_async and imap go on the client.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "mqpool/async_result.hpp"
#include "mqpool/detail/job.hpp"
#include "mqpool/options.hpp"

namespace mqpool::detail {

// What a task of result type R leaves behind on the client.
template <class R>
using Value = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

// Converts the result of task `task` to R. Throws SerializationError naming the task,
// what it returned and R when that does not convert (a Remote<Sig> whose result type
// is not the task's); only that path builds the message.
template <class R>
R convert_result(const msgpack::object& o, const std::string& task) {
  try {
    return convert_value<R>(o);
  } catch (const std::exception&) {
    throw SerializationError("task '" + task + "' returned " + describe_object(o) +
                             ", which does not convert to " + type_name<R>());
  }
}

// Calls on_value(index, Value<R>&&) or on_error(index, const WireError&) for each task
// of a RESULT chunk of task `task`, in order. A value that cannot be decoded becomes an
// error.
template <class R, class OnValue, class OnError>
void visit_outcomes(std::uint64_t first, std::uint32_t count, Reader& values,
                    const ErrorList& errors, const std::string& task, OnValue&& on_value,
                    OnError&& on_error) {
  std::size_t e = 0;
  for (std::uint32_t k = 0; k < count; ++k) {
    try {
      if constexpr (plain_integer<R>) {
        R v;
        if ((e == errors.size() || errors[e].first != k) && values.next_integer(v)) {
          on_value(first + k, std::move(v));
          continue;
        }
      }
      const msgpack::object& obj = values.next();
      if (e < errors.size() && errors[e].first == k) {
        on_error(first + k, errors[e++].second);
      } else if constexpr (std::is_void_v<R>) {
        on_value(first + k, std::monostate{});
      } else {
        on_value(first + k, convert_result<R>(obj, task));
      }
    } catch (const SerializationError& x) {
      on_error(first + k, WireError{ErrorCode::serialization, "", x.what(), task, ""});
    }
  }
}

// Calls a user callback; an exception escaping it must not stop the client session.
template <class F, class... A>
void call_user(const F& f, A&&... a) noexcept {
  if (!f) return;
  try {
    f(std::forward<A>(a)...);
  } catch (...) {
  }
}

// Calls error_callback with the mqpool::Error inside `ex`.
template <class F>
void call_error(const F& f, const std::exception_ptr& ex) noexcept {
  if (!f) return;
  try {
    std::rethrow_exception(ex);
  } catch (const Error& err) {
    call_user(f, err);
  } catch (...) {
  }
}

// One apply_async call. It holds its result state itself (AsyncResult shares it
// through an aliasing pointer): one allocation per call instead of two, and callbacks
// only when given; 100,000 calls in flight at once are memory first touched.
template <class R>
class ApplyJob final : public Job {
 public:
  ApplyJob(Callbacks<R> cb, std::string task)
      : cb_(cb.callback || cb.error_callback ? std::make_unique<Callbacks<R>>(std::move(cb))
                                             : nullptr),
        task_(std::move(task)) {}
  ResultState<R>& state() { return state_; }
  // The name of the task: what the pool submits, and what a decoding error names.
  const std::string& task() const { return task_; }

  std::uint32_t deliver(std::uint64_t first, std::uint32_t count, Reader& values,
                        const ErrorList& errors) override {
    std::uint32_t fresh = 0;
    visit_outcomes<R>(
        first, count, values, errors, task_,
        [&](std::uint64_t, Value<R>&& v) {
          if (done_) return;
          done_ = true;
          ++fresh;
          if constexpr (std::is_void_v<R>) {
            if (cb_) call_user(cb_->callback);
            state_.set_value(true);
          } else {
            if (cb_) call_user(cb_->callback, std::as_const(v));
            state_.set_value(std::move(v));
          }
        },
        [&](std::uint64_t, const WireError& e) {
          if (done_) return;
          ++fresh;
          fail(e);
        });
    return fresh;
  }
  void fail(const WireError& e) override {
    if (done_) return;
    done_ = true;
    auto ex = to_exception(e);
    if (cb_) call_error(cb_->error_callback, ex);
    state_.set_exception(ex);
  }

 private:
  ResultState<R> state_;
  std::unique_ptr<Callbacks<R>> cb_;
  std::string task_;
  bool done_ = false;
};

// What map returns: nothing for a void function, otherwise a vector of results.
template <class R>
using MapResult = std::conditional_t<std::is_void_v<R>, void, std::vector<R>>;

template <class R>
class MapJob final : public Job {
 public:
  MapJob(std::shared_ptr<ResultState<MapResult<R>>> state, MapOptions<R> opts, std::size_t n,
         std::string task)
      : state_(std::move(state)),
        opts_(std::move(opts)),
        task_(std::move(task)),
        got_((n + 63) / 64, 0),
        remaining_(n),
        n_(n) {
    if constexpr (!std::is_void_v<R>) {
      reserve_to_fill(results_, n);
      results_.resize(n);
    }
  }

  std::uint32_t deliver(std::uint64_t first, std::uint32_t count, Reader& values,
                        const ErrorList& errors) override {
    std::uint32_t fresh = 0;
    std::uint32_t k = 0;
    if constexpr (plain_integer<R>) {
      // The common case in one tight loop (a million of them in a map of squares): no
      // errors, every value an integer. Whatever else comes takes the general path.
      // Not `first + count <= n_`: a first index near 2^64 (a RESULT header from a broken
      // broker) wraps that sum, and the chunk landed far outside results_ and got_.
      if (errors.empty() && first <= n_ && count <= n_ - first && none_taken(first, count)) {
        k = static_cast<std::uint32_t>(values.next_integers(results_.data() + first, count));
        mark_taken(first, k);
        fresh = k;
      }
    }
    visit_outcomes<R>(
        first + k, count - k, values, errors, task_,
        [&](std::uint64_t i, Value<R>&& v) {
          if (!take(i)) return;
          ++fresh;
          if constexpr (!std::is_void_v<R>) results_[i] = std::move(v);
        },
        [&](std::uint64_t i, const WireError& e) {
          if (!take(i)) return;
          ++fresh;
          record_error(i, e);
        });
    if (fresh > 0) publish_answered();
    if (remaining_ == 0 && fresh > 0) finish();
    return fresh;
  }
  // Tasks that have their outcome. Any thread.
  std::size_t answered() const noexcept { return answered_.load(std::memory_order_acquire); }
  // Blocks until more than `seen` tasks have their outcome (map's pacing). Any thread
  // but the delivery thread, which is the one that moves it on.
  void wait_answered_above(std::size_t seen) const noexcept {
    for (std::size_t a = answered(); a <= seen && a < n_; a = answered()) answered_.wait(a);
  }
  // A map over no input: complete at once, with the callback.
  void finish_empty() { finish(); }
  int chunksize() const { return opts_.chunksize; }
  void fail(const WireError& e) override {
    if (finished_) return;
    for (std::size_t i = 0; i < n_; ++i)
      if (take(i)) record_error(i, e);
    publish_answered();
    if (!finished_) finish();
  }

 private:
  bool take(std::uint64_t i) {
    const std::uint64_t bit = std::uint64_t{1} << (i % 64);
    if (i >= n_ || (got_[i / 64] & bit)) return false;
    got_[i / 64] |= bit;
    --remaining_;
    return true;
  }
  // The bits of tasks first .. first+count-1, a word at a time: f(word, mask).
  template <class F>
  void for_bits(std::uint64_t first, std::uint64_t count, F&& f) {
    while (count > 0) {
      const std::uint64_t bit = first % 64;
      const std::uint64_t n = std::min<std::uint64_t>(count, 64 - bit);
      f(got_[first / 64], (n == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1) << bit);
      first += n;
      count -= n;
    }
  }
  bool none_taken(std::uint64_t first, std::uint64_t count) {
    bool none = true;
    for_bits(first, count, [&](std::uint64_t& w, std::uint64_t m) { none &= (w & m) == 0; });
    return none;
  }
  void mark_taken(std::uint64_t first, std::uint64_t count) {
    for_bits(first, count, [](std::uint64_t& w, std::uint64_t m) { w |= m; });
    remaining_ -= count;
  }
  // Wakes a map() that waits for outcomes before it encodes more (wait_answered_above).
  void publish_answered() noexcept {
    answered_.store(n_ - remaining_, std::memory_order_release);
    answered_.notify_all();  // no system call while nobody waits
  }
  // map raises the error of the lowest-index failed task.
  void record_error(std::uint64_t i, const WireError& e) {
    if (!error_ || i < error_index_) {
      error_ = to_exception(e);
      error_index_ = i;
    }
  }
  void finish() {
    finished_ = true;
    if (error_) {
      call_error(opts_.error_callback, error_);
      state_->set_exception(error_);
    } else if constexpr (std::is_void_v<R>) {
      call_user(opts_.callback);
      state_->set_value(true);
    } else {
      call_user(opts_.callback, std::as_const(results_));
      state_->set_value(std::move(results_));
    }
  }

  std::shared_ptr<ResultState<MapResult<R>>> state_;
  MapOptions<R> opts_;
  std::string task_;  // for decoding errors
  std::conditional_t<std::is_void_v<R>, std::monostate, std::vector<R>> results_;
  std::vector<std::uint64_t> got_;  // one bit per task: has its outcome
  std::size_t remaining_;
  std::size_t n_;
  std::atomic<std::size_t> answered_{0};  // n_ - remaining_, published for the submitter
  std::exception_ptr error_;
  std::uint64_t error_index_ = 0;
  bool finished_ = false;
};

// The shared state of an imap / imap_unordered stream: outcomes arrive on the session
// thread, the consumer takes them on its own. Guarded by mu.
template <class R>
class StreamJob final : public Job {
 public:
  using Outcome = std::variant<Value<R>, std::exception_ptr>;

  StreamJob(bool ordered, std::string task) : ordered_(ordered), task_(std::move(task)) {}

  std::uint32_t deliver(std::uint64_t first, std::uint32_t count, Reader& values,
                        const ErrorList& errors) override {
    std::uint32_t fresh = 0;
    {
      std::lock_guard lock(mu);
      visit_outcomes<R>(
          first, count, values, errors, task_,
          [&](std::uint64_t i, Value<R>&& v) { fresh += put(i, Outcome(std::move(v))); },
          [&](std::uint64_t i, const WireError& e) { fresh += put(i, Outcome(to_exception(e))); });
    }
    cv.notify_all();
    return fresh;
  }
  void fail(const WireError& e) override {
    {
      std::lock_guard lock(mu);
      auto ex = to_exception(e);
      std::vector<std::uint64_t> left(outstanding.begin(), outstanding.end());
      for (std::uint64_t i : left) put(i, Outcome(ex));
      failed_with = ex;
    }
    cv.notify_all();
  }

  // Consumer side, with mu held.
  bool has_next() const { return ordered_ ? ready_.count(next_index) != 0 : !queue_.empty(); }
  Outcome take_next() {
    Outcome o;
    if (ordered_) {
      auto it = ready_.find(next_index);
      o = std::move(it->second);
      ready_.erase(it);
    } else {
      o = std::move(queue_.front());
      queue_.pop_front();
    }
    ++next_index;
    return o;
  }

  std::mutex mu;
  std::condition_variable cv;
  std::unordered_set<std::uint64_t> outstanding;  // sent, no outcome yet
  std::uint64_t next_index = 0;                   // outcomes taken by the consumer
  std::exception_ptr failed_with;                 // the pool failed every task (terminate)

 private:
  std::uint32_t put(std::uint64_t i, Outcome&& o) {
    if (outstanding.erase(i) == 0) return 0;  // a duplicate
    if (ordered_)
      ready_.emplace(i, std::move(o));
    else
      queue_.push_back(std::move(o));
    return 1;
  }

  const bool ordered_;
  const std::string task_;                            // for decoding errors
  std::unordered_map<std::uint64_t, Outcome> ready_;  // ordered: by task index
  std::deque<Outcome> queue_;                         // unordered: in arrival order
};

}  // namespace mqpool::detail
