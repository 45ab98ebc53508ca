// The executor: one process, one DEALER, runs chunks from the registry.
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <optional>
#include <zmq.hpp>

#include "agent.hpp"
#include "host.hpp"
#include "log.hpp"
#include "mqpool/registry.hpp"
#include "protocol.hpp"

namespace mqpool::worker {

namespace {

// Runs one chunk; outcomes go to `frames` as (errors, values).
void run_one(const proto::TaskSpec& spec, const zmq::message_t& args,
             const std::optional<WireError>& init_error, std::vector<zmq::message_t>& frames) {
  if (init_error) {
    proto::fail_frames(spec.count, *init_error, frames);
    return;
  }
  const detail::TaskEntry* entry = detail::Registry::instance().find(spec.fn);
  if (entry == nullptr) {
    proto::fail_frames(spec.count,
                       WireError{ErrorCode::unknown_task, "", "no worker knows the task '" + spec.fn + "'",
                                 spec.fn, detail::host_pid()},
                       frames);
    return;
  }
  detail::Reader reader(args.data(), args.size());
  detail::ChunkOutput out;
  entry->run(reader, spec.count, out, spec.fn);
  if (out.errors.empty() && !reader.at_end())
    detail::log().warn("executor: task chunk for '{}' has trailing bytes; ignored", spec.fn);
  frames.push_back(proto::encode_errors(out.errors));
  frames.push_back(proto::to_frame(std::move(out.values)));
}

void restore_signals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGPIPE}) signal(s, SIG_DFL);
}

}  // namespace

void run_executor(const AgentOptions& options, std::uint64_t agent) {
  const pid_t agent_pid = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // the agent is single-threaded: this is its lifetime
  if (getppid() != agent_pid) _exit(1);
  restore_signals();

  int code = kPlannedExit;
  {
    zmq::context_t ctx(1);  // our own: the agent's context is never touched after fork
    zmq::socket_t sock(ctx, zmq::socket_type::dealer);
    const auto pid = static_cast<std::uint32_t>(getpid());
    sock.set(zmq::sockopt::routing_id, proto::executor_id(agent, pid));
    sock.set(zmq::sockopt::rcvhwm, 0);
    sock.set(zmq::sockopt::sndhwm, 0);
    sock.set(zmq::sockopt::maxmsgsize, proto::kMaxMessageSize);
    sock.connect(options.endpoint);

    std::optional<WireError> init_error;
    if (options.initializer) {
      try {
        options.initializer();
      } catch (...) {
        // Not a reason to exit: a replacement would fail the same way, forever. Every
        // task this executor receives fails with the initializer's error instead.
        init_error = detail::describe_current_exception("initializer");
        init_error->code = ErrorCode::initializer;
        init_error->message = "pool initializer failed: " + init_error->message;
      }
    }

    const int max = options.maxtasksperchild;
    proto::Ready ready{agent, pid, detail::hostname(),
                       max > 0 ? std::min<std::uint32_t>(options.credit, max) : options.credit,
                       max > 0 ? 1u : 0u};
    proto::send(sock, proto::make(proto::Cmd::ready, ready), false);

    int chunks_done = 0;
    while (max == 0 || chunks_done < max) {
      std::optional<proto::Message> m;
      try {
        m = proto::recv(sock, false, zmq::recv_flags::none);
      } catch (const SerializationError& e) {
        detail::log().warn("executor: dropped a malformed message: {}", e.what());
        continue;
      } catch (const zmq::error_t& e) {
        code = 1;
        break;
      }
      if (!m || m->cmd != proto::Cmd::task) continue;
      std::vector<proto::TaskSpec> specs;
      try {
        specs = proto::decode<std::vector<proto::TaskSpec>>(*m);
        if (specs.size() != m->frames.size()) throw SerializationError("frame count");
      } catch (const SerializationError& e) {
        detail::log().warn("executor: dropped a malformed task: {}", e.what());
        continue;
      }
      std::vector<std::uint64_t> ids;
      proto::Message done;
      done.cmd = proto::Cmd::done;
      for (std::size_t i = 0; i < specs.size(); ++i) {
        ids.push_back(specs[i].chunk);
        run_one(specs[i], m->frames[i], init_error, done.frames);
      }
      done.header = proto::encode(ids);
      proto::send(sock, std::move(done), false);
      chunks_done += static_cast<int>(specs.size());
    }
    // Leaving scope flushes the last DONE (linger) before the context closes.
  }
  _exit(code);
}

}  // namespace mqpool::worker
