// Tasks that the integration tests run on a real local pool. The test binary is also
// the worker binary (the pool forks it), so every task registered in tasks.cpp runs on
// the workers. Tasks run in other processes: side effects the tests check go through
// files, never through memory.
#pragma once

#include <cstdint>
#include <map>
#include <msgpack.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace itest {

// A user exception type, to check that TaskError::remote_type() is demangled.
class CustomFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A user struct carried by MSGPACK_DEFINE.
struct Point {
  std::int64_t x = 0;
  double y = 0;
  std::string label;
  std::vector<int> tags;
  MSGPACK_DEFINE(x, y, label, tags)
  bool operator==(const Point&) const = default;
};

// One task of the "map does not fail fast" test: sleeps, leaves a marker file
// `<dir>/done-<index>`, then throws "boom <index>" if `fail`.
struct Job {
  std::string dir;
  int index = 0;
  int sleep_ms = 0;
  bool fail = false;
  MSGPACK_DEFINE(dir, index, sleep_ms, fail)
};

// One input of a single-argument task that waits: returns `value` at once if `path` is
// empty, else once the file `path` exists (-1 after max_ms).
struct Gate {
  std::string path;
  std::int64_t value = 0;
  std::int64_t max_ms = 60000;
  MSGPACK_DEFINE(path, value, max_ms)
};

// One input of "logged_size": bytes to carry, a file that must exist before it runs,
// and a file to append a byte to once it has.
struct Logged {
  std::string gate;
  std::string log;
  std::vector<char> bytes;
  MSGPACK_DEFINE(gate, log, bytes)
};

// --- plain values -------------------------------------------------------------------
std::int64_t square(std::int64_t x);                       // "square"
int add(int a, int b);                                     // "tests.add" (MQPOOL_TASK_AS)
std::int64_t identity(std::int64_t x);                     // "identity"
std::int64_t jittered(std::int64_t x);                     // "jittered": sleeps 0..6 ms, returns x
void noop();                                               // "noop": no argument, void result
void touch(std::string path);                              // "touch": creates `path`, void result
std::string echo_string(std::string s);                    // "echo_string"
std::vector<char> echo_bytes(std::vector<char> b);         // "echo_bytes"
Point shift(Point p, std::int64_t dx);                     // "shift": x += dx, appends dx to tags
std::optional<std::int64_t> half_if_even(std::int64_t x);  // "half_if_even"
std::map<std::string, std::int64_t> count_words(std::string text);         // "count_words"
std::tuple<std::int64_t, std::string> tag(std::int64_t n, std::string s);  // "tag"

// --- time -----------------------------------------------------------------------------
std::int64_t sleep_ms(std::int64_t ms);  // "sleep_ms": sleeps, returns ms
// "logged_size": waits for in.gate (60 s at most), appends one byte to in.log, returns
// in.bytes.size() (-1 if the gate never opened).
std::int64_t logged_size(Logged in);
// "wait_file": returns `value` once `path` exists; gives up (returns -1) after max_ms.
std::int64_t wait_file(std::string path, std::int64_t value, std::int64_t max_ms);
std::int64_t gated(Gate g);  // "gated": see Gate
// "pid_then_wait": writes getpid() to `pid_path`, then waits for `gate` (at most max_ms).
std::int64_t pid_then_wait(std::string pid_path, std::string gate, std::int64_t max_ms);

// --- failures -------------------------------------------------------------------------
// "fail_if": throws std::runtime_error("boom <x>") if x == bad, else returns x.
std::int64_t fail_if(std::int64_t x, std::int64_t bad);
std::int64_t fail_at_seven(std::int64_t x);  // "fail_at_seven": fail_if(x, 7)
std::int64_t fail_custom(std::int64_t x);    // "fail_custom": itest::CustomFailure("custom x")
// "fail_with_pid": throws std::runtime_error(std::to_string(getpid())).
std::int64_t fail_with_pid(std::int64_t x);
std::int64_t fail_non_std(std::int64_t x);  // "fail_non_std": throws an int
std::int64_t run_job(Job job);              // "run_job": see Job

// --- processes ------------------------------------------------------------------------
std::int64_t worker_pid(std::int64_t ignored);  // "worker_pid": getpid()
std::int64_t agent_pid(std::int64_t ignored);   // "agent_pid": getppid()
std::int64_t slow_pid(std::int64_t ms);         // "slow_pid": sleeps, returns getpid()

// --- options and resilience -----------------------------------------------------------
void note_initializer();                               // not a task: the PoolOptions::initializer
std::int64_t initializer_calls(std::int64_t ignored);  // "initializer_calls" in this process
// "die": appends a line to `log`, then dies: by signal `sig` if > 0, else _exit(-sig).
std::int64_t die(std::string log, std::int64_t sig);
// "die_once": first attempt writes its pid to `pid_path` and waits for `gate` (the test
// kills it); a later attempt (the file exists) returns `value`.
std::int64_t die_once(std::string pid_path, std::string gate, std::int64_t value);

// A function with a signature the registry accepts but that is never registered.
std::int64_t not_registered(std::int64_t x);

}  // namespace itest
