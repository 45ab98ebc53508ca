#include "tasks.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mqpool/mqpool.hpp>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "helpers.hpp"

namespace ftest {
namespace {

// One write(2) with O_APPEND: lines from several processes never interleave.
void append_line(const std::string& path, const std::string& line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
  const std::string text = line + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) throw std::runtime_error("short write to " + path);
}

std::string pid_pair() { return std::to_string(getpid()) + " " + std::to_string(getppid()); }

[[noreturn]] void leave(std::int64_t how) {
  const rlimit no_core{0, 0};  // a SIGSEGV or SIGABRT must not leave core files behind
  ::setrlimit(RLIMIT_CORE, &no_core);
  switch (how) {
    case kSigkill:
      ::kill(getpid(), SIGKILL);
      break;
    case kSigsegv:
      // The default action, as a crash gets it: under AddressSanitizer its own handler
      // would catch the signal, report it and exit(1), and the death had another cause.
      ::signal(SIGSEGV, SIG_DFL);
      ::raise(SIGSEGV);
      break;
    case kExit3:
      std::exit(3);
    case kUnderscore3:
      ::_exit(3);
    case kSigstop:
      ::raise(SIGSTOP);
      // Continued (nobody should): fall through to a distinctive exit.
      ::_exit(42);
    case kAbort:
      std::abort();
  }
  // A signal that did not end the process (blocked or ignored): say so by an odd code.
  std::this_thread::sleep_for(std::chrono::seconds(5));
  ::_exit(99);
}

int g_initializer_calls = 0;  // per process: each executor has its own copy

}  // namespace

int claim_try(const std::string& dir) {
  for (int n = 1;; ++n) {
    const std::string path = dir + "/try-" + std::to_string(n);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::close(fd);
      return n;
    }
    if (errno != EEXIST) throw std::system_error(errno, std::generic_category(), "open " + path);
  }
}

std::int64_t fated(Fate f) {
  if (f.dir.empty()) return f.value;
  const int n = claim_try(f.dir);
  write_file_atomically(f.dir + "/pid-" + std::to_string(n), pid_pair());
  if (n <= f.deaths) leave(f.how);
  return f.value;
}

std::vector<char> fated_echo(Fate f, std::vector<char> bytes) {
  (void)fated(f);
  return bytes;
}

std::int64_t bytes_then_wait(std::string pid_path, std::string gate, std::int64_t max_ms,
                             std::vector<char> bytes) {
  (void)pid_then_wait(std::move(pid_path), std::move(gate), max_ms);
  return static_cast<std::int64_t>(bytes.size());
}

std::vector<char> pattern_bytes(std::int64_t n, std::int64_t seed) {
  std::vector<char> out(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<char>((i * 131 + static_cast<std::size_t>(seed) * 7 + i / 4096) & 0xff);
  return out;
}

std::vector<char> make_bytes(std::int64_t n, std::int64_t seed) { return pattern_bytes(n, seed); }

std::int64_t step(Step s) {
  write_file_atomically(s.dir + "/done-" + std::to_string(s.index), pid_pair());
  std::this_thread::sleep_for(std::chrono::milliseconds(s.sleep_ms));
  return s.index;
}

std::int64_t pid(std::int64_t) { return getpid(); }
std::int64_t ppid(std::int64_t) { return getppid(); }

std::int64_t pid_then_wait(std::string pid_path, std::string gate, std::int64_t max_ms) {
  write_file_atomically(pid_path, pid_pair());
  (void)await_file(gate, std::chrono::milliseconds(max_ms));
  return getpid();
}

std::int64_t stuck(std::string dir, std::int64_t ms) {
  const int n = claim_try(dir);
  write_file_atomically(dir + "/pid-" + std::to_string(n), pid_pair());
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return getpid();
}

std::int64_t nap(std::int64_t ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

std::int64_t log_line(std::int64_t round) {
  spdlog::info("failure.log_line: round {} in process {}", round, getpid());
  return 2 * round + 1;
}

std::tuple<std::int64_t, std::int64_t> init_state(std::int64_t) {
  return {getpid(), g_initializer_calls};
}

void counting_initializer(const std::string& dir) {
  ++g_initializer_calls;
  append_line(dir + "/init", std::to_string(getpid()));
}

void throwing_initializer(const std::string& dir) {
  ++g_initializer_calls;
  append_line(dir + "/init", std::to_string(getpid()));
  throw std::runtime_error(kInitializerMessage);
}

}  // namespace ftest

MQPOOL_TASK_AS(ftest::fated, "failure.fated");
MQPOOL_TASK_AS(ftest::step, "failure.step");
MQPOOL_TASK_AS(ftest::pid, "failure.pid");
MQPOOL_TASK_AS(ftest::ppid, "failure.ppid");
MQPOOL_TASK_AS(ftest::pid_then_wait, "failure.pid_then_wait");
MQPOOL_TASK_AS(ftest::stuck, "failure.stuck");
MQPOOL_TASK_AS(ftest::init_state, "failure.init_state");
MQPOOL_TASK_AS(ftest::nap, "failure.nap");
MQPOOL_TASK_AS(ftest::log_line, "failure.log_line");
MQPOOL_TASK_AS(ftest::fated_echo, "failure.fated_echo");
MQPOOL_TASK_AS(ftest::bytes_then_wait, "failure.bytes_then_wait");
MQPOOL_TASK_AS(ftest::make_bytes, "failure.make_bytes");
