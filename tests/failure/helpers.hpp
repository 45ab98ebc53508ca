// The integration tests' helpers (deadlines, temp dirs, /proc checks), plus the process
// helpers the failure tests need on top.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <sstream>

#include "../integration/helpers.hpp"

extern char** environ;

namespace ftest {

using namespace itest;

// True while /proc has an entry for `pid` (running, stopped or a zombie not yet reaped).
inline bool process_exists(pid_t pid) { return proc_stat(pid).has_value(); }

// Every process (zombies included) whose parent is `parent`.
inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (auto s = proc_stat(pid); s && s->ppid == parent) out.push_back(pid);
  }
  return out;
}

// Children of `parent` that are running (not zombies).
inline std::set<pid_t> live_children_of(pid_t parent) {
  std::set<pid_t> out;
  for (pid_t pid : children_of(parent))
    if (process_running(pid)) out.insert(pid);
  return out;
}

// Makes this process the reaper of its orphaned descendants for the scope (the pool's
// agent, once its client dies, is re-parented here instead of to init), so that "gone"
// can mean "no /proc entry at all", whoever init is.
class SubreaperScope {
 public:
  SubreaperScope() { ok_ = ::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0; }
  ~SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  bool ok() const { return ok_; }

 private:
  bool ok_ = false;
};

// Whether every process in `pids` exits within `limit`. Orphans re-parented to this
// process (the subreaper) are reaped here, so that none lingers as a zombie.
inline bool all_gone_within(const std::set<pid_t>& pids, std::chrono::milliseconds limit) {
  return eventually(
      [&] {
        bool all = true;
        for (pid_t p : pids) {
          ::waitpid(p, nullptr, WNOHANG);
          all = all && !process_exists(p);
        }
        return all;
      },
      limit);
}

// "12 34": two numbers written by a task (its pid and its parent's pid).
struct PidPair {
  pid_t pid = 0;
  pid_t ppid = 0;
};
inline std::optional<PidPair> await_pid_pair(const std::string& path,
                                             std::chrono::milliseconds limit = kLong) {
  if (!await_file(path, limit)) return std::nullopt;
  std::istringstream in(read_file(path));
  PidPair p;
  in >> p.pid >> p.ppid;
  return p;
}

// Number of files in `dir` whose name starts with `prefix`.
inline int count_files(const std::string& dir, const std::string& prefix) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with(prefix)) ++n;
  return n;
}

// This test binary re-executed in a helper role (main.cpp: MQPOOL_FAILURE_SCENARIO),
// a fresh process rather than a fork() of the multithreaded test. Killed (SIGKILL) and
// reaped on destruction if still running, so that a failed assertion leaves nothing.
class Scenario {
 public:
  // `stderr_path`, `stdout_path`: where its standard error and output go (inherited
  // when empty).
  Scenario(const std::string& name, const std::string& dir, std::vector<std::string> args = {},
           const std::string& stderr_path = {}, const std::string& stdout_path = {}) {
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
    env.push_back("MQPOOL_FAILURE_SCENARIO=" + name);
    env.push_back("MQPOOL_FAILURE_DIR=" + dir);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    args.insert(args.begin(), "mqpool_failure_tests");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (!stderr_path.empty())
      posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (!stdout_path.empty())
      posix_spawn_file_actions_addopen(&actions, 1, stdout_path.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (posix_spawn(&pid_, "/proc/self/exe", &actions, nullptr, argv.data(), envp.data()) != 0)
      pid_ = -1;
    spawned_ = pid_;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Scenario() { kill(); }
  Scenario(const Scenario&) = delete;
  Scenario& operator=(const Scenario&) = delete;

  pid_t pid() const { return pid_; }
  // SIGKILL and reap; returns the wait status (-1 if it was not running).
  int kill() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGKILL);
    int status = -1;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  // For a scenario that made itself a process group leader (setpgid(0, 0)): SIGKILLs
  // what is left of its group, so that the processes it forked (a pool's agent and
  // executors, perhaps deadlocked) die too, even after it has ended; then kill().
  int kill_group() {
    if (spawned_ > 0) ::kill(-spawned_, SIGKILL);
    return kill();
  }
  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Reaps it if it ends within `limit`: its wait status, or nothing (still running).
  std::optional<int> wait_for(std::chrono::milliseconds limit) {
    if (pid_ <= 0) return std::nullopt;
    int status = -1;
    if (!eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, limit))
      return std::nullopt;
    pid_ = -1;
    return status;
  }
  // Reaps it (it must be on its way out). Returns the wait status.
  int wait() {
    int status = -1;
    if (pid_ > 0) ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;      // -1 once reaped
  pid_t spawned_ = -1;  // its pid (and group) as spawned, kept after reaping
};

}  // namespace ftest
