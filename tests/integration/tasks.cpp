#include "tasks.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mqpool/mqpool.hpp>
#include <sstream>
#include <thread>

#include "helpers.hpp"

namespace itest {
namespace {

int g_initializer_calls = 0;  // per process: the executor's own copy

}  // namespace

std::int64_t square(std::int64_t x) { return x * x; }
int add(int a, int b) { return a + b; }
std::int64_t identity(std::int64_t x) { return x; }

std::int64_t jittered(std::int64_t x) {
  std::this_thread::sleep_for(std::chrono::milliseconds((x * 37) % 7));
  return x;
}

void noop() {}
void touch(std::string path) { write_file_atomically(path, "touched"); }
std::string echo_string(std::string s) { return s; }
std::vector<char> echo_bytes(std::vector<char> b) { return b; }

Point shift(Point p, std::int64_t dx) {
  p.x += dx;
  p.tags.push_back(static_cast<int>(dx));
  return p;
}

std::optional<std::int64_t> half_if_even(std::int64_t x) {
  if (x % 2 != 0) return std::nullopt;
  return x / 2;
}

std::map<std::string, std::int64_t> count_words(std::string text) {
  std::map<std::string, std::int64_t> counts;
  std::istringstream in(text);
  for (std::string w; in >> w;) ++counts[w];
  return counts;
}

std::tuple<std::int64_t, std::string> tag(std::int64_t n, std::string s) {
  return {n * 2, s + "!"};
}

std::int64_t sleep_ms(std::int64_t ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

std::int64_t logged_size(Logged in) {
  if (!await_file(in.gate, std::chrono::seconds(60))) return -1;
  std::ofstream(in.log, std::ios::app) << 'x';
  return static_cast<std::int64_t>(in.bytes.size());
}

std::int64_t wait_file(std::string path, std::int64_t value, std::int64_t max_ms) {
  return await_file(path, std::chrono::milliseconds(max_ms)) ? value : -1;
}

std::int64_t gated(Gate g) {
  if (g.path.empty()) return g.value;
  return await_file(g.path, std::chrono::milliseconds(g.max_ms)) ? g.value : -1;
}

std::int64_t pid_then_wait(std::string pid_path, std::string gate, std::int64_t max_ms) {
  write_file_atomically(pid_path, std::to_string(getpid()));
  return await_file(gate, std::chrono::milliseconds(max_ms)) ? 1 : -1;
}

std::int64_t fail_if(std::int64_t x, std::int64_t bad) {
  if (x == bad) throw std::runtime_error("boom " + std::to_string(x));
  return x;
}

std::int64_t fail_at_seven(std::int64_t x) { return fail_if(x, 7); }

std::int64_t fail_custom(std::int64_t x) { throw CustomFailure("custom " + std::to_string(x)); }

std::int64_t fail_with_pid(std::int64_t) { throw std::runtime_error(std::to_string(getpid())); }

std::int64_t fail_non_std(std::int64_t x) { throw static_cast<int>(x); }

std::int64_t run_job(Job job) {
  std::this_thread::sleep_for(std::chrono::milliseconds(job.sleep_ms));
  write_file_atomically(job.dir + "/done-" + std::to_string(job.index), "done");
  if (job.fail) throw std::runtime_error("boom " + std::to_string(job.index));
  return job.index;
}

std::int64_t worker_pid(std::int64_t) { return getpid(); }
std::int64_t agent_pid(std::int64_t) { return getppid(); }

std::int64_t slow_pid(std::int64_t ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return getpid();
}

void note_initializer() { ++g_initializer_calls; }
std::int64_t initializer_calls(std::int64_t) { return g_initializer_calls; }

std::int64_t die(std::string log, std::int64_t sig) {
  {
    std::ofstream out(log, std::ios::app);
    out << getpid() << '\n';
  }
  if (sig > 0) {
    const rlimit no_core{0, 0};  // a SIGSEGV must not leave core files behind
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::kill(getpid(), static_cast<int>(sig));
    std::this_thread::sleep_for(std::chrono::seconds(5));  // a blocked signal: still die
  }
  _exit(static_cast<int>(-sig));
}

std::int64_t die_once(std::string pid_path, std::string gate, std::int64_t value) {
  if (file_exists(pid_path)) return value;
  write_file_atomically(pid_path, std::to_string(getpid()));
  (void)await_file(gate, std::chrono::milliseconds(60000));
  return -1;  // reached only if the test failed to kill this process
}

std::int64_t not_registered(std::int64_t x) { return x; }

// Registered under their own spelling, inside the namespace (MQPOOL_TASK uses #fn).
MQPOOL_TASK(square);
MQPOOL_TASK(logged_size);
MQPOOL_TASK(identity);
MQPOOL_TASK(jittered);
MQPOOL_TASK(noop);
MQPOOL_TASK(touch);
MQPOOL_TASK(echo_string);
MQPOOL_TASK(echo_bytes);
MQPOOL_TASK(shift);
MQPOOL_TASK(half_if_even);
MQPOOL_TASK(count_words);
MQPOOL_TASK(tag);
MQPOOL_TASK(sleep_ms);
MQPOOL_TASK(wait_file);
MQPOOL_TASK(gated);
MQPOOL_TASK(pid_then_wait);
MQPOOL_TASK(fail_if);
MQPOOL_TASK(fail_at_seven);
MQPOOL_TASK(fail_custom);
MQPOOL_TASK(fail_with_pid);
MQPOOL_TASK(fail_non_std);
MQPOOL_TASK(run_job);
MQPOOL_TASK(worker_pid);
MQPOOL_TASK(agent_pid);
MQPOOL_TASK(slow_pid);
MQPOOL_TASK(initializer_calls);
MQPOOL_TASK(die);
MQPOOL_TASK(die_once);

}  // namespace itest

// Registered under an explicit name, from outside the namespace.
MQPOOL_TASK_AS(itest::add, "tests.add");
