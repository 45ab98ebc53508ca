#include "processes.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace soak {

namespace {

struct Stat {
  char state = '?';
  pid_t ppid = 0;
};

// Fields 3 and 4 of /proc/<pid>/stat; the name in field 2 may hold spaces and ')'.
std::optional<Stat> proc_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string line((std::istreambuf_iterator<char>(in)), {});
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  Stat s;
  if (!(rest >> s.state >> s.ppid)) return std::nullopt;
  return s;
}

std::array<std::atomic<pid_t>, 16> g_emergency{};

}  // namespace

std::optional<long> rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));  // "VmRSS:  1234 kB"
  }
  return std::nullopt;
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    if (auto s = proc_stat(pid); s && s->ppid == parent && s->state != 'Z') out.push_back(pid);
  }
  return out;
}

bool kill_child_of(pid_t pid, pid_t parent) {
  // glibc 2.36 declares the pidfd calls without extern "C": the system calls themselves.
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return false;
  // The pidfd pins the process: if it is still the child we saw, the signal reaches it.
  const auto s = proc_stat(pid);
  bool sent = false;
  if (s && s->ppid == parent && s->state != 'Z')
    sent = ::syscall(SYS_pidfd_send_signal, fd, SIGKILL, nullptr, 0) == 0;
  ::close(fd);
  return sent;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (SIG" + (name ? name : "?") +
           ")";
  }
  return "ended with wait status " + std::to_string(status);
}

void add_emergency_kill(pid_t pid) {
  for (auto& slot : g_emergency) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pid)) return;
  }
}

void remove_emergency_kill(pid_t pid) {
  for (auto& slot : g_emergency) {
    pid_t mine = pid;
    slot.compare_exchange_strong(mine, 0);
  }
}

void emergency_kill_all() {
  for (auto& slot : g_emergency) {
    if (const pid_t pid = slot.load(); pid > 0) ::kill(pid, SIGKILL);
  }
}

}  // namespace soak
