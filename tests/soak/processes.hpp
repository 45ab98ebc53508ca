// The processes of a soak run: the ones it starts (Child), the ones its local pools fork
// (agents and their executors, found through /proc), and their memory (VmRSS).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace soak {

using Clock = std::chrono::steady_clock;

// VmRSS of `pid` in KiB, from /proc/<pid>/status; empty if it has no such line (gone).
std::optional<long> rss_kib(pid_t pid);

// The living (not zombie) children of `parent`, from /proc/*/stat.
std::vector<pid_t> children_of(pid_t parent);

// SIGKILLs `pid` if it is still a child of `parent`. Through a pidfd, so that a pid
// reused since children_of() read it is never hit. True if the signal was sent.
bool kill_child_of(pid_t pid, pid_t parent);

// "exited with code 1", "killed by signal 9 (SIGKILL)".
std::string describe_status(int status);

// Processes to SIGKILL when the run has to stop at once (a hang: the watchdog ends the
// program with _exit, and no destructor runs). Safe to call from any thread.
void add_emergency_kill(pid_t pid);
void remove_emergency_kill(pid_t pid);
void emergency_kill_all();

// A program this run started. It gets SIGKILL if this process dies first
// (PR_SET_PDEATHSIG), and ends with the object otherwise: SIGTERM, then SIGKILL if it
// has not exited 10 s later; always reaped.
class Child {
 public:
  // Runs `path` with `argv` (argv[0] included). `capture` makes its stdout a pipe for
  // read_line(); else it shares ours.
  Child(std::string what, const std::string& path, std::vector<std::string> argv, bool capture);
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  const std::string& what() const { return what_; }
  // The next line of its stdout. Throws if none is complete by `deadline`.
  std::string read_line(Clock::time_point deadline);
  // Reads whatever it printed since, without waiting, so that it never blocks on a full
  // pipe; returns it.
  std::string drain();
  // How it ended, or "" while it runs.
  std::string state();
  // SIGTERM, then SIGKILL after `patience`; returns its wait status. Idempotent.
  int stop(std::chrono::milliseconds patience = std::chrono::seconds(10));
  // True once it has ended (and been reaped); waits for that until `deadline`.
  bool wait(Clock::time_point deadline);

  std::string what_;
  pid_t pid_ = -1;
  int out_ = -1;  // read end of its stdout, or -1
  std::string pending_;
  std::optional<int> status_;  // its wait status, once reaped
};

}  // namespace soak
