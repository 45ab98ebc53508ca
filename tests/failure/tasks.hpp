// Tasks of the failure tests. The test binary is also the worker binary (the pool forks
// it), so every task registered in tasks.cpp runs on the workers, under names prefixed
// "failure.". Tasks run in other processes: whatever the tests check goes through files.
#pragma once

#include <cstdint>
#include <msgpack.hpp>
#include <string>
#include <tuple>
#include <vector>

namespace ftest {

// How a task leaves its process.
enum How : std::int64_t {
  kSigkill = 0,      // kill(getpid(), SIGKILL)
  kSigsegv = 1,      // raise(SIGSEGV) (no core file)
  kExit3 = 2,        // std::exit(3): atexit handlers and static destructors run
  kUnderscore3 = 3,  // _exit(3)
  kSigstop = 4,      // raise(SIGSTOP): the process stops answering, it does not end
  kAbort = 5,        // std::abort(): SIGABRT
};

// One input of "failure.fated". Each try claims the next file "try-<n>" in `dir` (so
// `dir` counts the dispatches that reached a process) and writes "pid-<n>" there with
// "<pid> <ppid>". Tries 1..deaths leave the process as `how` says; later tries return
// `value`. An empty `dir` (deaths must be 0) just returns `value`.
struct Fate {
  std::string dir;
  std::int64_t deaths = 0;
  std::int64_t how = kSigkill;
  std::int64_t value = 0;
  MSGPACK_DEFINE(dir, deaths, how, value)
};

// One input of "failure.step": writes "<dir>/done-<index>", sleeps `sleep_ms`, returns
// index.
struct Step {
  std::string dir;
  std::int64_t index = 0;
  std::int64_t sleep_ms = 0;
  MSGPACK_DEFINE(dir, index, sleep_ms)
};

std::int64_t fated(Fate f);               // "failure.fated"
std::int64_t step(Step s);                // "failure.step"
std::int64_t pid(std::int64_t ignored);   // "failure.pid": getpid()
std::int64_t ppid(std::int64_t ignored);  // "failure.ppid": getppid()
// "failure.pid_then_wait": writes "<pid> <ppid>" to `pid_path`, waits until `gate`
// exists (at most max_ms), returns getpid().
std::int64_t pid_then_wait(std::string pid_path, std::string gate, std::int64_t max_ms);
// "failure.stuck": claims "try-<n>" in `dir`, writes "pid-<n>", sleeps `ms`, returns getpid().
std::int64_t stuck(std::string dir, std::int64_t ms);
// "failure.nap": sleeps `ms` milliseconds, returns `ms`.
std::int64_t nap(std::int64_t ms);
// "failure.log_line": logs one line with spdlog's default logger (as a user's task may),
// returns 2 * round + 1.
std::int64_t log_line(std::int64_t round);
// "failure.init_state": (getpid(), how many times the initializer ran in this process).
std::tuple<std::int64_t, std::int64_t> init_state(std::int64_t ignored);

// Large payloads (test_shared_memory.cpp). "failure.fated_echo": as fated(f), then
// returns `bytes`. "failure.bytes_then_wait": as pid_then_wait, then returns the size of
// `bytes`. "failure.make_bytes": pattern_bytes(n, seed).
std::vector<char> fated_echo(Fate f, std::vector<char> bytes);
std::int64_t bytes_then_wait(std::string pid_path, std::string gate, std::int64_t max_ms,
                             std::vector<char> bytes);
std::vector<char> make_bytes(std::int64_t n, std::int64_t seed);
// Not a task: `n` bytes that differ with `seed` and along their length.
std::vector<char> pattern_bytes(std::int64_t n, std::int64_t seed);

// Not tasks: PoolOptions::initializer bodies. Both count the call in this process and
// append "<pid>\n" to `<dir>/init`; the second then throws
// std::runtime_error("initializer exploded: no database at db://nowhere").
void counting_initializer(const std::string& dir);
[[noreturn]] void throwing_initializer(const std::string& dir);
inline constexpr const char* kInitializerMessage =
    "initializer exploded: no database at db://nowhere";

// Creates `dir/try-<n>` for the first n whose file does not exist yet; returns n.
int claim_try(const std::string& dir);

}  // namespace ftest
