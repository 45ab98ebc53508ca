// The agent: a single-threaded forkserver that keeps `processes` executors alive.
#include "worker/agent.hpp"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <zmq.hpp>

#include "common/fork_clean.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "common/protocol.hpp"
#include "mqpool/registry.hpp"

namespace mqpool::worker {

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + " (SIG" + (abbrev ? abbrev : "?") + ")";
  }
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  return "ended with status " + std::to_string(status);
}

namespace {

// Kills an executor and every process in its group: the commands it started
// (mqpool.exec) stay in it, so a killed task leaves nothing running (docs/API.md §10).
// The executor itself too if its group could not be made (setpgid failed in both).
void kill_group(pid_t executor) {
  if (kill(-executor, SIGKILL) != 0) kill(executor, SIGKILL);
}

std::uint64_t random_id() {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd() ^ static_cast<std::uint64_t>(getpid());
}

class Agent {
 public:
  explicit Agent(const AgentOptions& o) : options_(o), id_(random_id()) {}

  int run() {
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGCHLD, SIGTERM, SIGINT}) sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    // The first executors are forked before this process has a ZeroMQ context: connecting
    // to tcp://broker:5556 sets ZeroMQ's I/O thread resolving the name, and a child forked
    // meanwhile can inherit a lock held by a thread it does not have (the likeliest
    // cause: getaddrinfo's). Forked after the connect, an executor hung before its READY
    // in 4 of 16 compose test runs; forked before any thread, in none of 16. The broker
    // takes executors that register before their agent (send_kill, core.cpp).
    for (int i = 0; i < options_.processes; ++i) spawn();

    zmq::context_t ctx(1);
    zmq::socket_t sock(ctx, zmq::socket_type::dealer);
    proto::configure_dealer(sock, proto::Traffic::control, proto::agent_id(id_), 1000,
                            options_.max_message);
    if (options_.curve) detail::apply_curve(sock, *options_.curve);
    // Its executors use the same keys: the agent alone says why the broker refuses them.
    detail::HandshakeWatch watch(ctx, sock, options_.curve.has_value());
    sock.connect(options_.endpoint);
    sock_ = &sock;
    send(proto::make(proto::Cmd::agent_hello, hello()));

    zmq::pollitem_t items[] = {{sock.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, sfd, ZMQ_POLLIN, 0},
                               {watch.socket().handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, options_.parent_fd, ZMQ_POLLIN, 0}};
    const int nitems = options_.parent_fd >= 0 ? 4 : 3;
    last_heard_ = next_beat_ = Clock::now();
    while (!stopping_ && !(draining_ && children_.empty())) {
      const auto now = Clock::now();
      if (draining_ && now >= drain_deadline_) {
        for (pid_t pid : children_) kill_group(pid);  // past the grace: handed back
        drain_deadline_ = TimePoint::max();
      }
      const auto until = std::min(next_beat_, drain_deadline_);
      try {
        zmq::poll(items, nitems,
                  std::max(std::chrono::ceil<std::chrono::milliseconds>(until - now),
                           std::chrono::milliseconds(0)));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
        continue;
      }
      if (items[0].revents & ZMQ_POLLIN) on_broker();
      if (items[1].revents & ZMQ_POLLIN) on_signal(sfd);
      if (items[2].revents & ZMQ_POLLIN) refuse(watch.refusal());
      if (nitems == 4 && (items[3].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) {
        char buf[64];
        if (read(options_.parent_fd, buf, sizeof buf) <= 0) stopping_ = true;  // client gone
      }
      beat(Clock::now());
    }
    shutdown();
    close(sfd);
    return exit_code_;
  }

 private:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  proto::AgentHello hello() const {
    return proto::AgentHello{id_,
                             static_cast<std::uint32_t>(getpid()),
                             detail::hostname(),
                             detail::Registry::instance().names(),
                             static_cast<std::uint32_t>(options_.processes),
                             options_.heartbeat_ms,
                             options_.liveness};
  }

  void send(proto::Message&& m) { proto::send(*sock_, std::move(m), false); }

  // Through fork_clean(), as every fork of ours: ZeroMQ's threads run beside this one.
  // Each executor leads a process group of its own, for kill_group(); both sides call
  // setpgid, so that the group exists before either goes on, whichever runs first.
  void spawn() {
    const pid_t pid = detail::fork_clean();
    if (pid < 0) {
      detail::log().error("agent: fork failed: {}", std::strerror(errno));
      return;
    }
    if (pid == 0) {
      setpgid(0, 0);
      run_executor(options_, id_);  // never returns
    }
    setpgid(pid, pid);
    children_.insert(pid);
  }

  // Heartbeats both ways (Paranoid Pirate): a broker silent for the liveness window is
  // lost, and the agent greets it again every interval until one answers (a restarted
  // broker learns this agent's tasks and can send it KILLs again).
  void beat(TimePoint now) {
    if (now < next_beat_) return;
    next_beat_ = now + std::chrono::milliseconds(options_.heartbeat_ms);
    if (welcomed_ &&
        now - last_heard_ > std::chrono::milliseconds(options_.heartbeat_ms) * options_.liveness) {
      detail::log().warn("agent: lost the broker at {}; reconnecting", options_.endpoint);
      welcomed_ = false;
    }
    if (welcomed_)
      send(proto::make(proto::Cmd::heartbeat, std::vector<int>{}));
    else
      send(proto::make(proto::Cmd::agent_hello, hello()));
  }

  // Everything waiting; the malformed-message policy is receiver_'s (common/protocol.hpp).
  void on_broker() {
    receiver_.drain(*sock_, false, [this](proto::Message& m) {
      last_heard_ = Clock::now();
      handle(m);
    });
  }

  void handle(proto::Message& m) {
    switch (m.cmd) {
      case proto::Cmd::kill: {
        const auto pid = static_cast<pid_t>(proto::decode<proto::Kill>(m).pid);
        if (children_.count(pid)) kill_group(pid);  // only ever our own children
        return;
      }
      case proto::Cmd::welcome:
        if (!welcomed_ && !ever_welcomed_ && options_.parent_fd < 0) announce();
        if (!welcomed_ && ever_welcomed_)
          detail::log().info("agent: back with the broker at {}", options_.endpoint);
        welcomed_ = ever_welcomed_ = true;
        return;
      case proto::Cmd::reset:
        welcomed_ = false;
        send(proto::make(proto::Cmd::agent_hello, hello()));
        return;
      case proto::Cmd::bye:
        detail::log().warn("agent: the broker at {} stopped ({}); waiting for it to come back",
                           options_.endpoint, proto::decode<proto::Bye>(m).reason);
        welcomed_ = false;
        return;
      case proto::Cmd::refused:
        refuse("refused this worker: " + proto::decode<proto::Bye>(m).reason);
        return;
      default:
        return;  // HEARTBEAT: its arrival is all it says
    }
  }

  // The broker will not take this worker (a wrong endpoint, a key it does not admit):
  // one line on stderr, and the agent ends with 1. Nothing when `why` is empty.
  void refuse(const std::string& why) {
    if (why.empty()) return;
    std::fprintf(stderr, "mqpool worker: %s: %s\n", options_.endpoint.c_str(), why.c_str());
    exit_code_ = 1;
    stopping_ = true;
  }

  // One line on stdout when a standalone worker first reaches its broker.
  void announce() const {
    std::string tasks;
    for (const std::string& t : detail::Registry::instance().names())
      tasks += (tasks.empty() ? "" : ", ") + t;
    std::printf("mqpool worker: connected to %s as %s (pid %d): %d executors, tasks: %s\n",
                options_.endpoint.c_str(), detail::hostname().c_str(), static_cast<int>(getpid()),
                options_.processes, tasks.c_str());
    std::fflush(stdout);
  }

  void on_signal(int sfd) {
    signalfd_siginfo info;
    while (read(sfd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) stop_signal();
    }
    reap();
  }

  // SIGTERM/SIGINT: with a grace period, the broker sends no more work, executors
  // finish the TASK they run and leave, and what they held but had not started goes
  // back to the broker (a planned exit); past the grace they are killed, and their work
  // is handed back the same way. Without one (a local pool's terminate), all die now.
  // SIGTERM goes to the executor alone, not its group: the command it runs is part of
  // the task that may finish, and would otherwise end at once (exit 143).
  void stop_signal() {
    if (options_.grace.count() == 0 || draining_) {
      stopping_ = true;
      return;
    }
    draining_ = true;
    drain_deadline_ = Clock::now() + options_.grace;
    detail::log().info("agent: stopping; running tasks may finish for {} ms",
                       options_.grace.count());
    send(proto::make(proto::Cmd::leaving, std::vector<int>{}));
    for (pid_t pid : children_) kill(pid, SIGTERM);
  }

  // Collects every child that has ended, tells the broker, and forks replacements. An
  // executor that died by itself (a crash, out of memory, an exit) may leave commands in
  // its group: they are killed while it is still a zombie (seen with WNOWAIT), so that its
  // pid, which names the group, cannot yet have gone to another process.
  void reap() {
    siginfo_t info{};
    while (!children_.empty() && waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid > 0) {
      const pid_t pid = info.si_pid;
      info.si_pid = 0;
      if (children_.count(pid)) kill(-pid, SIGKILL);
      int status = 0;
      if (waitpid(pid, &status, 0) != pid || !children_.erase(pid)) continue;
      const bool planned = draining_ || (WIFEXITED(status) && WEXITSTATUS(status) == kPlannedExit);
      proto::Exited e{static_cast<std::uint32_t>(pid), describe_exit(status), planned};
      if (!planned) detail::log().info("agent: executor {} {}", pid, e.reason);
      send(proto::make(proto::Cmd::exited, e));
      if (!stopping_ && !draining_) spawn();
    }
  }

  void shutdown() {
    for (pid_t pid : children_) kill_group(pid);
    while (!children_.empty()) {
      const pid_t pid = waitpid(-1, nullptr, 0);
      if (pid < 0 && errno != EINTR) break;
      if (pid > 0) children_.erase(pid);
    }
  }

  const AgentOptions& options_;
  const std::uint64_t id_;
  zmq::socket_t* sock_ = nullptr;
  proto::Receiver receiver_{"agent", "the broker"};
  std::set<pid_t> children_;
  bool stopping_ = false;
  bool draining_ = false;
  bool welcomed_ = false;
  bool ever_welcomed_ = false;
  int exit_code_ = 0;
  TimePoint last_heard_{}, next_beat_{};
  TimePoint drain_deadline_ = TimePoint::max();
};

}  // namespace

int run_agent(const AgentOptions& options) { return Agent(options).run(); }

}  // namespace mqpool::worker
