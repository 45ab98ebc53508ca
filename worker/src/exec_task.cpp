// The built-in tasks "mqpool.exec" and "mqpool.exec_job" (docs/API.md, section 10): one
// runner that starts a command in the executor's process group, writes its standard
// input, reads its two outputs up to a bound, and waits for it. `mqpool run` uses them.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common/host.hpp"
#include "mqpool/registry.hpp"
#include "mqpool/worker.hpp"

namespace mqpool::worker {

namespace {

// Each output is kept up to this unless the caller asks otherwise (docs/API.md §10).
constexpr std::size_t kDefaultMaxOutput = std::size_t{64} << 20;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("mqpool: " + what + ": " + std::strerror(errno));
}

// A file descriptor, closed when it goes out of scope or on reset().
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Both ends close-on-exec, and above 2: the child dup2()s its three ends onto 0, 1 and 2
// in turn, and an end that already were one of them (a worker started with a standard
// stream closed) would be overwritten before its own dup2.
struct Pipe {
  Fd read, write;
};
Pipe make_pipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) fail("pipe");
  for (int& fd : fds) {
    if (fd > STDERR_FILENO) continue;
    const int above = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    close(fd);
    fd = above;
  }
  Pipe p{Fd(fds[0]), Fd(fds[1])};
  if (p.read.get() < 0 || p.write.get() < 0) fail("pipe");
  return p;
}

// Where each command name was found in PATH, as a shell's hash table keeps it: execvp
// tries every directory of PATH before the one that holds the command, each a failed
// execve, for every job of `mqpool run`. A name is looked up again when PATH changes,
// and when its file no longer runs (the child then falls back to execvp).
class CommandPaths {
 public:
  // The file `name` resolves to, or nullptr for execvp to search (a name with a slash,
  // one not found, or PATH unset).
  const char* find(const std::string& name) {
    const char* path = std::getenv("PATH");
    if (name.find('/') != std::string::npos || path == nullptr || *path == '\0') return nullptr;
    if (path_ != path) {
      path_ = path;
      found_.clear();
    }
    auto [it, fresh] = found_.try_emplace(name);
    if (fresh) it->second = search(name);
    return it->second.empty() ? nullptr : it->second.c_str();
  }
  void forget(const std::string& name) { found_.erase(name); }

 private:
  // The first PATH entry holding an executable regular file `name`; "" if none, or if
  // a relative entry (an empty one is the working directory) comes first: what that
  // holds changes with the working directory, so execvp searches.
  std::string search(const std::string& name) const {
    for (std::size_t at = 0; at <= path_.size();) {
      std::size_t end = path_.find(':', at);
      if (end == std::string::npos) end = path_.size();
      const std::string dir = path_.substr(at, end - at);
      if (dir.empty() || dir[0] != '/') return {};
      std::string file = dir;
      file.append("/").append(name);
      struct stat st {};
      if (stat(file.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(file.c_str(), X_OK) == 0)
        return file;
      at = end + 1;
    }
    return {};
  }

  std::string path_;
  std::unordered_map<std::string, std::string> found_;
};

// One per thread that runs commands (the executor's, or a caller's own).
CommandPaths& command_paths() {
  thread_local CommandPaths paths;
  return paths;
}

// What the child needs, all made before the clone: sharing the executor's memory, the
// child may call only async-signal-safe functions until it has exec'd.
struct ChildPlan {
  char** argv;
  const char* file;  // where argv[0] was found (CommandPaths), or nullptr
  int in, out, err;  // the child's pipe ends, for its 0, 1 and 2
  pid_t executor;
  sigset_t mask;             // the executor thread's own mask, which the command gets
  int exec_errno = 0;        // written by the child when execvp fails
  bool file_failed = false;  // written by the child when `file` did not run
};

// The child of the clone. Every signal is blocked until it has set back to SIG_DFL each
// handler it inherited: such a handler (the executor's SIGTERM one, a task's own) would
// run here on the memory of the executor, which waits suspended. SIG_IGN stays ignored,
// as across any exec; the executor ignores none (executor.cpp, restore_signals).
// Not instrumented by AddressSanitizer (make sanitize): on a stack it did not make, in
// memory it shares with the executor, its hooks would act on the executor's state, and
// the one before _exit() wrote a warning into the command's standard error.
__attribute__((no_sanitize("address"))) int child_main(void* arg) {
  auto* plan = static_cast<ChildPlan*>(arg);
  // It dies with its executor (killed, or dead by its own PDEATHSIG with the agent).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != plan->executor) _exit(127);
  for (int s = 1; s < NSIG; ++s) {
    struct sigaction sa {};
    if (sigaction(s, nullptr, &sa) != 0 || sa.sa_handler == SIG_IGN || sa.sa_handler == SIG_DFL)
      continue;
    sa.sa_handler = SIG_DFL;
    sa.sa_flags = 0;
    sigaction(s, &sa, nullptr);
  }
  dup2(plan->in, STDIN_FILENO);
  dup2(plan->out, STDOUT_FILENO);
  dup2(plan->err, STDERR_FILENO);
  sigprocmask(SIG_SETMASK, &plan->mask, nullptr);
  if (plan->file != nullptr) {
    execv(plan->file, plan->argv);
    plan->file_failed = true;  // gone, or not a binary (execvp runs a script with sh)
  }
  execvp(plan->argv[0], plan->argv);
  plan->exec_errno = errno;
  _exit(127);
}

// The clone's stack, for the child only until it execs: glibc's execvp puts a path of
// PATH's length plus the file name on it, and for a script without "#!" a copy of argv.
class ChildStack {
 public:
  explicit ChildStack(std::size_t argc) {
    const char* path = std::getenv("PATH");
    const std::size_t need =
        (64 << 10) + (path ? std::strlen(path) : 0) + 4096 + (argc + 2) * sizeof(char*);
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    size_ = (need + page - 1) / page * page;
    mem_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1,
                0);
    if (mem_ == MAP_FAILED) fail("mmap of a stack for the command");
  }
  ~ChildStack() { munmap(mem_, size_); }
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;
  void* top() const { return static_cast<char*>(mem_) + size_; }

 private:
  std::size_t size_ = 0;
  void* mem_ = nullptr;
};

// Starts the command with clone(CLONE_VM | CLONE_VFORK), as posix_spawn does: no copy of
// the executor's page tables, however large it is (`mqpool run` starts thousands of small
// commands), and this thread waits until the child has exec'd or failed to. The command
// stays in the executor's process group, which the agent kills with the executor
// (agent.cpp). Returns its pid; `exec_errno` is set when it could not be started.
pid_t start(std::vector<char*>& argv, const Pipe& in, const Pipe& out, const Pipe& err,
            int& exec_errno) {
  const std::string name = argv[0];
  ChildPlan plan{argv.data(),
                 command_paths().find(name),
                 in.read.get(),
                 out.write.get(),
                 err.write.get(),
                 getpid(),
                 {}};
  ChildStack stack(argv.size());
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &plan.mask);
  const pid_t pid = clone(child_main, stack.top(), CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  const int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &plan.mask, nullptr);
  errno = clone_errno;
  if (pid < 0) fail("cannot start a process");
  if (plan.file_failed) command_paths().forget(name);
  exec_errno = plan.exec_errno;
  return pid;
}

// One output of the command: what is kept of it, and how many bytes came in all.
struct Output {
  std::string kept;
  std::uint64_t total = 0;
  void take(const char* data, std::size_t n, std::size_t max) {
    total += n;
    if (kept.size() < max) kept.append(data, std::min(n, max - kept.size()));
  }
};

// Blocks SIGPIPE on this thread for its scope: a command that ends without reading all of
// its input makes our write fail with EPIPE, and the signal would kill the executor (its
// SIGPIPE has the default action, for the tasks it runs). One that our writes raised is
// taken off the thread before the mask is restored.
class NoSigpipe {
 public:
  NoSigpipe() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~NoSigpipe() {
    const timespec now{};
    if (!was_pending_)
      while (sigtimedwait(&set_, nullptr, &now) == SIGPIPE) {
      }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  NoSigpipe(const NoSigpipe&) = delete;
  NoSigpipe& operator=(const NoSigpipe&) = delete;

 private:
  sigset_t set_{}, old_{};
  bool was_pending_ = false;
};

// Writes what it can of `input` without blocking; closes `fd` once all is written, or
// when the command no longer reads (EPIPE: the rest is dropped).
void feed(Fd& fd, std::string_view& input) {
  const ssize_t n = write(fd.get(), input.data(), input.size());
  if (n > 0) input.remove_prefix(static_cast<std::size_t>(n));
  if (input.empty() || (n < 0 && errno != EAGAIN && errno != EINTR)) fd.reset();
}

// Writes `input` to the command's standard input and reads both its outputs until they
// close, all through one poll, so that neither side ever waits on a full pipe: the
// command may write before it reads, or read all before it writes. Past `max` bytes an
// output is still read, and dropped. Each end is closed through its Fd, once: the
// executor's other threads open files too, and a second close() of a number could close
// what one of them has just been given.
void pump(Fd& in, Fd& out, Fd& err, std::string_view input, std::size_t max, Output& out_sink,
          Output& err_sink) {
  const NoSigpipe no_sigpipe;
  Fd* ends[3] = {&in, &out, &err};
  Output* sinks[3] = {nullptr, &out_sink, &err_sink};
  if (input.empty()) {
    in.reset();
  } else if (fcntl(in.get(), F_SETFL, O_NONBLOCK) != 0) {
    fail("fcntl");
  }
  char buf[65536];
  while (in.get() >= 0 || out.get() >= 0 || err.get() >= 0) {
    pollfd fds[3] = {{in.get(), POLLOUT, 0}, {out.get(), POLLIN, 0}, {err.get(), POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }
    if (fds[0].fd >= 0 && fds[0].revents != 0) feed(in, input);
    for (int i = 1; i < 3; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->take(buf, static_cast<std::size_t>(n), max);
      } else if (n == 0 || errno != EINTR) {
        ends[i]->reset();
      }
    }
  }
}

int reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// The line that says an output was cut, on a line of its own at the end of `err`.
void note_cut(const char* stream, const Output& o, std::size_t max, std::string& err) {
  if (o.total <= max) return;
  if (!err.empty() && err.back() != '\n') err += '\n';
  err += "mqpool: " + std::string(stream) + " cut at " + std::to_string(max) + " bytes (" +
         std::to_string(o.total) + " bytes in all)\n";
}

struct Finished {
  int status = 0;  // waitpid's
  std::string out, err;
  double start = 0;    // Unix time, seconds
  double runtime = 0;  // seconds
};

// Runs argv to its end with `input` on its standard input; each output is kept up to
// `max` bytes (0: kDefaultMaxOutput). A command that cannot be started ends with 127,
// and `err` says why.
Finished run(std::vector<std::string> argv, std::string_view input, std::uint64_t max_output) {
  if (argv.empty()) throw std::invalid_argument("mqpool: empty command line");
  const std::size_t max = max_output == 0 ? kDefaultMaxOutput : max_output;
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  Pipe in = make_pipe(), out = make_pipe(), err = make_pipe();

  Finished f;
  const auto wall = std::chrono::system_clock::now();
  const auto t0 = std::chrono::steady_clock::now();
  int exec_errno = 0;
  const pid_t pid = start(args, in, out, err, exec_errno);
  in.read.reset();  // the child's ends: EOF and EPIPE come only once the command's close
  out.write.reset();
  err.write.reset();
  Output o, e;
  try {
    pump(in.write, out.read, err.read, input, max, o, e);
  } catch (...) {
    kill(pid, SIGKILL);
    reap(pid);
    throw;
  }
  f.status = reap(pid);
  const std::chrono::duration<double> ran = std::chrono::steady_clock::now() - t0;
  f.runtime = ran.count();
  f.start =
      static_cast<double>(
          std::chrono::duration_cast<std::chrono::microseconds>(wall.time_since_epoch()).count()) /
      1e6;
  f.out = std::move(o.kept);
  f.err = std::move(e.kept);
  if (exec_errno != 0)
    f.err += "mqpool: cannot run " + argv[0] + ": " + std::strerror(exec_errno) + "\n";
  note_cut("standard output", o, max, f.err);
  note_cut("standard error", e, max, f.err);
  return f;
}

int signal_of(int status) { return WIFSIGNALED(status) ? WTERMSIG(status) : 0; }
int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + signal_of(status);
}

}  // namespace

std::tuple<int, std::string, std::string> exec_command(std::vector<std::string> argv) {
  Finished f = run(std::move(argv), {}, 0);
  return {exit_code_of(f.status), std::move(f.out), std::move(f.err)};
}

ExecJobResult exec_job(std::vector<std::string> argv, const std::string& stdin_data,
                       std::uint64_t max_output) {
  Finished f = run(std::move(argv), stdin_data, max_output);
  return {exit_code_of(f.status),
          signal_of(f.status),
          std::move(f.out),
          std::move(f.err),
          detail::hostname(),
          f.start,
          f.runtime};
}

}  // namespace mqpool::worker

MQPOOL_TASK_AS(mqpool::worker::exec_command, "mqpool.exec");
MQPOOL_TASK_AS(mqpool::worker::exec_job, "mqpool.exec_job");
