// soak::Child (processes.hpp): a program the soak run started, ended with it.
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "processes.hpp"

namespace soak {

namespace {

// In the forked child, before exec: only async-signal-safe calls (the parent may have
// threads). Never returns.
[[noreturn]] void exec_child(pid_t parent, int out_fd, const char* path, char* const* argv) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);       // the run died: so do its helpers
  if (::getppid() != parent) ::_exit(127);  // it died before prctl took effect
  if (out_fd >= 0) ::dup2(out_fd, STDOUT_FILENO);
  ::close_range(3, ~0u, 0);  // our sockets and pipes are not the child's business
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (const int sig : {SIGPIPE, SIGTERM, SIGINT}) ::signal(sig, SIG_DFL);
  ::execv(path, argv);
  ::_exit(127);
}

}  // namespace

Child::Child(std::string what, const std::string& path, std::vector<std::string> argv, bool capture)
    : what_(std::move(what)) {
  int fds[2] = {-1, -1};
  if (capture && ::pipe2(fds, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) exec_child(parent, fds[1], path.c_str(), args.data());
  if (fds[1] >= 0) ::close(fds[1]);
  if (pid_ < 0) {
    if (fds[0] >= 0) ::close(fds[0]);
    throw std::runtime_error("cannot start " + what_ + ": fork: " + std::strerror(errno));
  }
  add_emergency_kill(pid_);
  out_ = fds[0];
  if (out_ >= 0) ::fcntl(out_, F_SETFL, O_NONBLOCK);
}

Child::~Child() {
  stop();
  if (out_ >= 0) ::close(out_);
}

std::string Child::read_line(Clock::time_point deadline) {
  for (;;) {
    if (const auto nl = pending_.find('\n'); nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      const std::string s = state();
      throw std::runtime_error(what_ + " printed no line in time" +
                               (s.empty() ? "" : " (it " + s + ")"));
    }
    pollfd p{out_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 100))) <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(out_, buf, sizeof buf);
    if (n == 0) throw std::runtime_error(what_ + " closed its stdout before a whole line");
    if (n > 0) pending_.append(buf, static_cast<std::size_t>(n));
  }
}

std::string Child::drain() {
  std::string out = std::move(pending_);
  pending_.clear();
  char buf[4096];
  for (ssize_t n; out_ >= 0 && (n = ::read(out_, buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  return out;
}

std::string Child::state() {
  wait(Clock::now());
  return status_ ? describe_status(*status_) : "";
}

int Child::stop(std::chrono::milliseconds patience) {
  if (!status_ && pid_ > 0) {
    ::kill(pid_, SIGTERM);
    if (!wait(Clock::now() + patience)) {
      ::kill(pid_, SIGKILL);
      wait(Clock::time_point::max());
    }
  }
  return status_.value_or(0);
}

// Polls waitpid: a pidfd would do, but 20 ms steps are plenty for a soak run.
bool Child::wait(Clock::time_point deadline) {
  while (!status_) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      status_ = status;
      remove_emergency_kill(pid_);
      break;
    }
    if (r < 0 && errno != EINTR) {  // not ours to wait for any more: count it as gone
      status_ = 0;
      remove_emergency_kill(pid_);
      break;
    }
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace soak
