// The agent: a single-threaded forkserver that keeps `processes` executors alive.
#include "agent.hpp"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <random>
#include <set>
#include <zmq.hpp>

#include "host.hpp"
#include "log.hpp"
#include "mqpool/registry.hpp"
#include "protocol.hpp"

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

    zmq::context_t ctx(1);
    zmq::socket_t sock(ctx, zmq::socket_type::dealer);
    sock.set(zmq::sockopt::routing_id, proto::agent_id(id_));
    sock.set(zmq::sockopt::linger, 1000);
    sock.connect(options_.endpoint);
    sock_ = &sock;
    proto::send(sock, proto::make(proto::Cmd::agent_hello, hello()), false);
    for (int i = 0; i < options_.processes; ++i) spawn();

    zmq::pollitem_t items[] = {{sock.handle(), 0, ZMQ_POLLIN, 0},
                               {nullptr, sfd, ZMQ_POLLIN, 0},
                               {nullptr, options_.parent_fd, ZMQ_POLLIN, 0}};
    const int nitems = options_.parent_fd >= 0 ? 3 : 2;
    while (!stopping_) {
      try {
        zmq::poll(items, nitems, std::chrono::milliseconds(-1));
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
        continue;
      }
      if (items[0].revents & ZMQ_POLLIN) on_broker();
      if (items[1].revents & ZMQ_POLLIN) on_signal(sfd);
      if (nitems == 3 && (items[2].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) {
        char buf[64];
        if (read(options_.parent_fd, buf, sizeof buf) <= 0) stopping_ = true;  // client gone
      }
    }
    shutdown();
    close(sfd);
    return 0;
  }

 private:
  proto::AgentHello hello() const {
    return proto::AgentHello{id_,
                             static_cast<std::uint32_t>(getpid()),
                             detail::hostname(),
                             detail::Registry::instance().names(),
                             static_cast<std::uint32_t>(options_.processes),
                             options_.heartbeat_ms,
                             options_.liveness};
  }

  void spawn() {
    const pid_t pid = fork();
    if (pid < 0) {
      detail::log().error("agent: fork failed: {}", std::strerror(errno));
      return;
    }
    if (pid == 0) run_executor(options_, id_);  // never returns
    children_.insert(pid);
  }

  void on_broker() {
    while (true) {
      std::optional<proto::Message> m;
      try {
        m = proto::recv(*sock_, false, zmq::recv_flags::dontwait);
        if (!m) return;
        if (m->cmd != proto::Cmd::kill) continue;
        const auto pid = static_cast<pid_t>(proto::decode<proto::Kill>(*m).pid);
        if (children_.count(pid)) kill(pid, SIGKILL);  // only ever our own children
      } catch (const SerializationError& e) {
        detail::log().warn("agent: dropped a malformed message: {}", e.what());
      }
    }
  }

  void on_signal(int sfd) {
    signalfd_siginfo info;
    while (read(sfd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) stopping_ = true;
    }
    reap();
  }

  // Collects every child that has ended, tells the broker, and forks replacements.
  void reap() {
    int status = 0;
    pid_t pid;
    while (!children_.empty() && (pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (!children_.erase(pid)) continue;
      const bool planned = WIFEXITED(status) && WEXITSTATUS(status) == kPlannedExit;
      proto::Exited e{static_cast<std::uint32_t>(pid), describe_exit(status), planned};
      if (!planned) detail::log().info("agent: executor {} {}", pid, e.reason);
      proto::send(*sock_, proto::make(proto::Cmd::exited, e), false);
      if (!stopping_) spawn();
    }
  }

  void shutdown() {
    for (pid_t pid : children_) kill(pid, SIGKILL);
    while (!children_.empty()) {
      const pid_t pid = waitpid(-1, nullptr, 0);
      if (pid < 0 && errno != EINTR) break;
      if (pid > 0) children_.erase(pid);
    }
  }

  const AgentOptions& options_;
  const std::uint64_t id_;
  zmq::socket_t* sock_ = nullptr;
  std::set<pid_t> children_;
  bool stopping_ = false;
};

}  // namespace

int run_agent(const AgentOptions& options) { return Agent(options).run(); }

}  // namespace mqpool::worker
