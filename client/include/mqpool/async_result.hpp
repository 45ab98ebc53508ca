// AsyncResult<T>: the eventual result of apply_async / map_async / starmap_async.
#pragma once

#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>

#include "mqpool/errors.hpp"

namespace mqpool {

namespace detail {

// The shared state behind AsyncResult. Set once, from the client session's thread.
template <class T>
class ResultState {
 public:
  using Stored = std::conditional_t<std::is_void_v<T>, bool, T>;

  void set_value(Stored v) {
    {
      std::lock_guard lock(mu_);
      value_.emplace(std::move(v));
      done_ = true;
    }
    cv_.notify_all();
  }
  void set_exception(std::exception_ptr e) {
    {
      std::lock_guard lock(mu_);
      error_ = std::move(e);
      done_ = true;
    }
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_; });
  }
  bool wait_for(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, d, [&] { return done_; });
  }
  bool ready() const {
    std::lock_guard lock(mu_);
    return done_;
  }
  bool successful() const {
    std::lock_guard lock(mu_);
    if (!done_) throw Error("AsyncResult::successful(): the result is not ready");
    return !error_;
  }
  // Precondition: ready. Copies the value (all AsyncResult copies share it).
  T get() const {
    std::lock_guard lock(mu_);
    if (error_) std::rethrow_exception(error_);
    // Ready: error_ or value_ is set, and error_ was not.
    if constexpr (!std::is_void_v<T>) return *value_;  // NOLINT(bugprone-unchecked-optional-access)
  }
  // Precondition: ready, and no other holder will read the value again. Moves it out.
  T take() {
    std::lock_guard lock(mu_);
    if (error_) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<T>)
      return std::move(*value_);  // NOLINT(bugprone-unchecked-optional-access)
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::optional<Stored> value_;
  std::exception_ptr error_;
};

}  // namespace detail

// The result of an asynchronous call. Copyable; all copies share one result.
// Every member is thread-safe.
template <class T>
class AsyncResult {
 public:
  // Made by the Pool's submitting calls, not by users.
  explicit AsyncResult(std::shared_ptr<detail::ResultState<T>> s) : state_(std::move(s)) {}

  // Blocks until the result is in; returns a copy of it or rethrows the task's error
  // (TaskError, WorkerLostError, PoolStateError after terminate(), ...: docs/API.md, Errors).
  T get() const {
    state_->wait();
    return state_->get();
  }
  // As get(), but throws TimeoutError if the result is not ready within `timeout`. The
  // task keeps running; a later get() can still return its result.
  T get(std::chrono::milliseconds timeout) const {
    if (!state_->wait_for(timeout))
      throw TimeoutError("AsyncResult::get: no result within " + std::to_string(timeout.count()) +
                         " ms");
    return state_->get();
  }
  // Blocks until the result or the error is in; does not throw the task's error.
  void wait() const { state_->wait(); }
  // Blocks at most `timeout`; true if the result became ready within it.
  bool wait_for(std::chrono::milliseconds timeout) const { return state_->wait_for(timeout); }
  // Does not block: true once the result or the error is in.
  bool ready() const { return state_->ready(); }
  // Does not block: true if the call completed without error. Throws mqpool::Error if not
  // ready.
  bool successful() const { return state_->successful(); }

 private:
  std::shared_ptr<detail::ResultState<T>> state_;
};

}  // namespace mqpool
