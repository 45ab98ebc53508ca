// Test helpers: deadlines instead of sleeps, temporary directories, process checks.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace itest {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Deadline for anything that should finish quickly on an idle 2-core machine.
inline constexpr std::chrono::milliseconds kLong = 30s;
// Bound for "returns at once / promptly": generous, far below the tasks' sleeps.
inline constexpr std::chrono::milliseconds kPrompt = 5s;

// Runs `fn` on its own thread and returns its result (or rethrows its exception). If it
// has not returned within `limit`, the test binary reports `what` and exits with status
// 1: a hang fails the test instead of hanging the suite (a std::async future would
// block in its destructor).
template <class F>
auto bounded(std::chrono::milliseconds limit, const char* what, F fn) -> decltype(fn()) {
  using R = decltype(fn());
  auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
  auto future = task->get_future();
  std::thread([task] { (*task)(); }).detach();
  if (future.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "\nDEADLINE EXCEEDED: %s did not return within %lld ms\n", what,
                 static_cast<long long>(limit.count()));
    std::fflush(stderr);
    std::fflush(stdout);
    std::_Exit(1);
  }
  return future.get();
}

// Elapsed time of `fn` (which must itself be bounded).
template <class F>
std::chrono::milliseconds elapsed(F&& fn) {
  const auto t0 = Clock::now();
  fn();
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
}

// Polls `pred` until it holds or `limit` passes; returns its last value.
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = kLong) {
  const auto deadline = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > deadline) return pred();
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// A private temporary directory, removed with its contents. Declare it before the pool,
// so that it outlives the tasks that use it while the pool shuts down.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "mqpool-itest-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline bool file_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

inline void create_file(const std::string& path) { std::ofstream(path) << "x"; }

// Writes `text` to `path` through a rename, so that a reader never sees half a file.
inline void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
  }
  std::filesystem::rename(tmp, path);
}

// Creates `path` when it goes out of scope, so that a task waiting for that file ends
// even when an assertion leaves the test early (declare it after the pool).
class OpenOnExit {
 public:
  explicit OpenOnExit(std::string path) : path_(std::move(path)) {}
  ~OpenOnExit() { create_file(path_); }
  OpenOnExit(const OpenOnExit&) = delete;
  OpenOnExit& operator=(const OpenOnExit&) = delete;

 private:
  std::string path_;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) lines.push_back(l);
  return lines;
}

// Whether `path` exists within `limit` (tasks also wait on such gate files).
inline bool await_file(const std::string& path, std::chrono::milliseconds limit) {
  return eventually([&] { return file_exists(path); }, limit);
}

// The pid written by a task into `path`, once the file exists; nullopt past the deadline.
inline std::optional<pid_t> await_pid_file(const std::string& path,
                                           std::chrono::milliseconds limit = kLong) {
  if (!await_file(path, limit)) return std::nullopt;
  return static_cast<pid_t>(std::stol(read_file(path)));
}

struct ProcStat {
  char state = '?';
  pid_t ppid = 0;
};

// State and parent of `pid` from /proc, or nullopt if there is no such process.
inline std::optional<ProcStat> proc_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');  // the command name may contain spaces
  if (!in.good() && text.empty()) return std::nullopt;
  if (close == std::string::npos || close + 4 > text.size()) return std::nullopt;
  ProcStat s;
  s.state = text[close + 2];
  s.ppid = static_cast<pid_t>(std::atol(text.c_str() + close + 4));
  return s;
}

// True while `pid` runs (a zombie has finished running and does not count).
inline bool process_running(pid_t pid) {
  auto s = proc_stat(pid);
  return s && s->state != 'Z' && s->state != 'X';
}

// Every process (zombies included) whose parent is this test process.
inline std::vector<pid_t> children_of_this_process() {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (auto s = proc_stat(pid); s && s->ppid == ::getpid()) out.push_back(pid);
  }
  return out;
}

}  // namespace itest
