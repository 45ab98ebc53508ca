// Checking one outcome: the value the task must return for its input, or exactly the
// error it must fail with; and the outcomes an executor kill may cause instead.
#pragma once

#include <cstdint>
#include <mqpool/mqpool.hpp>
#include <optional>
#include <string>
#include <vector>

#include "soak.hpp"

namespace soak {

// A call being checked: how it reads in a failure message, and when it was submitted
// (kills from shortly before then on may have hit its tasks: accept_lost).
struct Call {
  std::string what;
  Clock::time_point submitted{};
};
inline Call call(const Soak&, std::string what) { return Call{std::move(what), Clock::now()}; }

// A kill this long before a call may still hit it: the broker may dispatch the call's task
// to the killed executor before the agent's report of the death reaches it, and that
// death then counts against the task (the broker cannot tell that it was never received).
inline constexpr std::chrono::milliseconds kLateNotice{1000};

// What a call must end with if no kill used up a task's tries: exactly one of these.
template <class T>
struct Expect {
  std::optional<T> value{};              // this value, or
  std::optional<std::int64_t> reject{};  // soak.picky's TaskError for this input, or
  bool timeout = false;                  // the pool's task_timeout: TimeoutError
};

enum class Outcome { value, task_error, timeout, lost };

std::string show(std::int64_t v);
std::string show(const std::string& v);
template <class T>
std::string show(const std::vector<T>& v) {
  return "a vector of " + std::to_string(v.size()) + " items";
}
// How `got` differs from `want` (they differ).
std::string difference(std::int64_t got, std::int64_t want);
std::string difference(const std::string& got, const std::string& want);
template <class T>
std::string difference(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size())
    return std::to_string(got.size()) + " items, expected " + std::to_string(want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] != want[i]) return "item " + std::to_string(i) + ": " + difference(got[i], want[i]);
  return "equal vectors";
}

std::string due(bool value, const std::optional<std::int64_t>& reject, bool timeout);
// The TaskError must be soak.picky's for `reject`; the TimeoutError must be the pool's
// task_timeout; the WorkerLostError must name a SIGKILL of a process the killer killed,
// and follow max_retries + 1 kills from kLateNotice before the call on. Each throws
// Failure otherwise.
void check_rejection(const Call& c, const mqpool::TaskError& e,
                     const std::optional<std::int64_t>& reject);
void check_timeout(const Target& t, const Call& c, const mqpool::TimeoutError& e, bool due);
void accept_lost(Soak& s, const Target& t, const Call& c, const mqpool::WorkerLostError& e);

// Runs `get` (which returns the value or throws the call's error) and checks what it
// gives against `e`. Returns which kind of outcome it was; throws Failure if wrong.
template <class T, class Get>
Outcome check(Soak& s, const Target& t, const Call& c, const Expect<T>& e, Get&& get) {
  try {
    const T got = get();
    if (!e.value)
      throw Failure(c.what + ": returned " + show(got) + "; " + due(false, e.reject, e.timeout));
    if (got != *e.value) throw Failure(c.what + ": returned " + difference(got, *e.value));
    return Outcome::value;
  } catch (const mqpool::TaskError& err) {
    check_rejection(c, err, e.reject);
    return Outcome::task_error;
  } catch (const mqpool::WorkerLostError& err) {
    accept_lost(s, t, c, err);
    return Outcome::lost;
  } catch (const mqpool::TimeoutError& err) {
    check_timeout(t, c, err, e.timeout);
    return Outcome::timeout;
  } catch (const mqpool::Error& err) {
    throw Failure(c.what + ": threw '" + err.what() + "'; " +
                  due(e.value.has_value(), e.reject, e.timeout));
  }
}

// Counts an outcome other than a value (errors, timeouts, lost tasks).
void count_failure_outcome(Soak& s, Outcome o);

}  // namespace soak
