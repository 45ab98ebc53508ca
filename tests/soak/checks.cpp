#include "checks.hpp"

#include <optional>

#include "tasks.hpp"

namespace soak {

std::string show(std::int64_t v) { return std::to_string(v); }
std::string show(const std::string& v) {
  return "a string of " + std::to_string(v.size()) + " bytes";
}

std::string difference(std::int64_t got, std::int64_t want) {
  return std::to_string(got) + ", expected " + std::to_string(want);
}

std::string difference(const std::string& got, const std::string& want) {
  if (got.size() != want.size())
    return show(got) + ", expected " + std::to_string(want.size()) + " bytes";
  std::size_t i = 0;
  while (i < got.size() && got[i] == want[i]) ++i;
  return "a string of " + std::to_string(got.size()) +
         " bytes that differs from the expected one at byte " + std::to_string(i);
}

std::string due(bool value, const std::optional<std::int64_t>& reject, bool timeout) {
  if (value) return "expected its value";
  if (reject) return "expected soak.picky's TaskError for input " + std::to_string(*reject);
  if (timeout) return "expected a TimeoutError from the pool's task_timeout";
  return "expected nothing (a bug in the soak test)";
}

void check_rejection(const Call& c, const mqpool::TaskError& e,
                     const std::optional<std::int64_t>& reject) {
  const std::string got = std::string("TaskError '") + e.what() + "'";
  if (!reject) throw Failure(c.what + ": threw " + got + ", but that input is not rejected");
  if (e.remote_type() != "std::domain_error")
    throw Failure(c.what + ": threw " + got + " whose remote_type() is '" + e.remote_type() +
                  "', expected 'std::domain_error'");
  if (e.remote_message() != rejection_message(*reject))
    throw Failure(c.what + ": threw " + got + " whose remote_message() is '" + e.remote_message() +
                  "', expected '" + rejection_message(*reject) + "'");
  if (e.task_name() != "soak.picky" || e.worker().empty())
    throw Failure(c.what + ": threw " + got + " with task_name() '" + e.task_name() +
                  "' and worker() '" + e.worker() + "', expected 'soak.picky' and a host:pid");
}

void check_timeout(const Target& t, const Call& c, const mqpool::TimeoutError& e, bool due) {
  const std::string what = e.what();
  if (what.starts_with("AsyncResult::get") || what.starts_with("ResultStream::next"))
    throw Failure(c.what + ": no outcome within " + std::to_string(kWait.count() / 1000) +
                  " s (a hang): " + what);
  if (!due) throw Failure(c.what + ": threw TimeoutError '" + what + "', but must not time out");
  const std::string limit =
      "ran past its time limit of " + std::to_string(t.task_timeout.count()) + " ms";
  if (what.find(limit) == std::string::npos)
    throw Failure(c.what + ": threw TimeoutError '" + what + "', expected one saying '" + limit +
                  "'");
}

namespace {

// The pid in "worker process lost: killed by signal 9 (SIGKILL) on HOST:PID (task ...".
std::optional<pid_t> lost_pid(const std::string& what) {
  const auto task = what.find(" (task '");
  const auto colon = task == std::string::npos ? task : what.rfind(':', task);
  if (colon == std::string::npos) return std::nullopt;
  const std::string digits = what.substr(colon + 1, task - colon - 1);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return static_cast<pid_t>(std::stol(digits));
}

}  // namespace

void accept_lost(Soak& s, const Target& t, const Call& c, const mqpool::WorkerLostError& e) {
  const std::string what = e.what();
  const auto pid = lost_pid(what);
  if (what.find("killed by signal 9 (SIGKILL)") == std::string::npos || !pid)
    throw Failure(c.what + ": threw WorkerLostError '" + what +
                  "', expected one naming a SIGKILL and the process it killed");
  const auto needed = static_cast<std::uint64_t>(t.max_retries) + 1;
  const Soak::Kills during = s.kills_since(c.submitted, *pid);
  const Soak::Kills around = s.kills_since(c.submitted - kLateNotice, *pid);
  if (around.n < needed || !around.named)
    throw Failure(c.what + ": threw WorkerLostError '" + what + "', but the soak test killed " +
                  std::to_string(around.n) + " executors from " +
                  std::to_string(kLateNotice.count()) + " ms before the call on" +
                  (around.named ? "" : ", none of them pid " + std::to_string(*pid)) +
                  ", and the " + t.name + " pool (max_retries " + std::to_string(t.max_retries) +
                  ") gives up on a task after " + std::to_string(needed) + " deaths");
  // Accepted, but counted apart (and the first few said): the task lost a try to a process
  // killed before the call was submitted.
  if (during.n < needed || !during.named) {
    s.count(Kind::lost_before_call);
    if (s.tally()[static_cast<int>(Kind::lost_before_call)] <= 3) {
      const auto before =
          std::chrono::duration_cast<std::chrono::milliseconds>(c.submitted - around.named_at);
      s.say("note: " + c.what + " failed with WorkerLostError '" + what +
            "'; the soak test had killed pid " + std::to_string(*pid) + " " +
            std::to_string(before.count()) + " ms before the call was submitted");
    }
  }
}

void count_failure_outcome(Soak& s, Outcome o) {
  if (o == Outcome::task_error) s.count(Kind::task_errors);
  if (o == Outcome::timeout) s.count(Kind::task_timeouts);
  if (o == Outcome::lost) s.count(Kind::worker_lost);
}

}  // namespace soak
