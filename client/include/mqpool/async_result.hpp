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
    if constexpr (!std::is_void_v<T>) return *value_;
  }
  // Precondition: ready, and no other holder will read the value again. Moves it out.
  T take() {
    std::lock_guard lock(mu_);
    if (error_) std::rethrow_exception(error_);
    if constexpr (!std::is_void_v<T>) return std::move(*value_);
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
  explicit AsyncResult(std::shared_ptr<detail::ResultState<T>> s) : state_(std::move(s)) {}

  // Waits for the result; returns it or rethrows the task's error.
  T get() const {
    state_->wait();
    return state_->get();
  }
  // As get(), but throws TimeoutError if the result is not ready within `timeout`.
  T get(std::chrono::milliseconds timeout) const {
    if (!state_->wait_for(timeout))
      throw TimeoutError("AsyncResult::get: no result within " + std::to_string(timeout.count()) +
                         " ms");
    return state_->get();
  }
  void wait() const { state_->wait(); }
  // True if the result became ready within `timeout`.
  bool wait_for(std::chrono::milliseconds timeout) const { return state_->wait_for(timeout); }
  bool ready() const { return state_->ready(); }
  // True if the call completed without error. Throws mqpool::Error if not ready.
  bool successful() const { return state_->successful(); }

 private:
  std::shared_ptr<detail::ResultState<T>> state_;
};

}  // namespace mqpool
