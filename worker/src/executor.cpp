// The executor: one process, one DEALER, runs chunks from the registry.
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <optional>
#include <thread>
#include <zmq.hpp>

#include "common/fault.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "common/protocol.hpp"
#include "common/shm.hpp"
#include "mqpool/registry.hpp"
#include "worker/agent.hpp"

namespace mqpool::worker {

namespace {

// Local pools only (common/shm.hpp): large arguments arrive as Refs into the client's
// memory, and large values go back through this executor's own segments.
struct SharedMemory {
  pid_t client = 0;  // 0: a cluster executor, and everything travels inline
  std::int64_t threshold = 0;
  std::int64_t max_message = 0;
  shm::ResultSegments values;
  shm::Mappings client_memory;  // kept for the next chunks
};

// The chunk's arguments, mapped from the client's memory when they come as Refs (into
// `mapped`); nothing, its tasks failed into `frames`, when the Refs do not check out.
const zmq::message_t* arguments(const proto::TaskSpec& spec, const zmq::message_t& args,
                                SharedMemory& shared, zmq::message_t& mapped,
                                std::vector<zmq::message_t>& frames) {
  if (shared.client == 0 || !shm::is_args_ref(args)) return &args;
  try {
    mapped = shm::map_args(args, shared.client, shared.max_message, shared.client_memory);
    return &mapped;
  } catch (const SerializationError& e) {
    proto::fail_frames(
        spec.count,
        WireError{ErrorCode::serialization, "mqpool::SerializationError",
                  std::string("task '") + spec.fn + "': " + e.what(), spec.fn, detail::host_pid()},
        frames);
    return nullptr;
  }
}

// Runs one chunk; outcomes go to `frames` as (errors, values).
void run_one(const proto::TaskSpec& spec, const zmq::message_t& frame,
             const std::optional<WireError>& init_error, SharedMemory& shared,
             std::vector<zmq::message_t>& frames) {
  if (init_error) {
    proto::fail_frames(spec.count, *init_error, frames);
    return;
  }
  zmq::message_t mapped;
  const zmq::message_t* in = arguments(spec, frame, shared, mapped, frames);
  if (in == nullptr) return;
  const zmq::message_t& args = *in;
  const detail::TaskEntry* entry = detail::Registry::instance().find(spec.fn);
  if (entry == nullptr) {
    proto::fail_frames(
        spec.count,
        WireError{ErrorCode::unknown_task, "", "no worker knows the task '" + spec.fn + "'",
                  spec.fn, detail::host_pid()},
        frames);
    return;
  }
  detail::Reader reader(args.data(), args.size());
  detail::ChunkOutput out;
  // Results are often about as large as their arguments (echo, transform): start there,
  // so that a large payload is not copied again and again as the buffer doubles.
  out.values = detail::Buffer(std::max<std::size_t>(256, args.size()));
  entry->run(reader, spec.count, out, spec.fn);
  if (out.errors.empty() && !reader.at_end())
    detail::log().warn("executor: task chunk for '{}' has trailing bytes; ignored", spec.fn);
  frames.push_back(proto::encode_errors(out.errors));
  std::optional<zmq::message_t> lent;
  if (shared.client != 0 && static_cast<std::int64_t>(out.values.size()) >= shared.threshold &&
      static_cast<std::int64_t>(out.values.size()) <= shared.max_message)
    lent = shared.values.lend(out.values);
  frames.push_back(lent ? std::move(*lent) : proto::to_frame(std::move(out.values)));
}

// The signals the main thread handles (restore_signals): SIGTERM from a draining agent,
// SIGINT.
sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// Starts `fn` on a thread that has the handled signals blocked from its first
// instruction (a thread inherits its creator's mask), so that no window remains in
// which one could land on it.
template <class F>
std::thread thread_without_handled_signals(F fn) {
  const sigset_t handled = handled_signals();
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &handled, &old);
  struct Restore {
    const sigset_t& old;
    ~Restore() { pthread_sigmask(SIG_SETMASK, &old, nullptr); }
  } restore{old};
  return std::thread(std::move(fn));
}

// The executor's heartbeat: a thread with its own socket, so that a task running for
// minutes still shows the broker that its process is alive (a stopped process sends
// nothing). When the broker's echoes stop for the liveness window it raises `lost()`,
// and the main loop registers again (the broker may have restarted). A flag, not a
// socket: the main loop then blocks in one recv, with no poll over two sockets, which
// saves a handful of system calls on every task's path.
//
// Nothing may escape this thread: std::terminate would SIGABRT the process, and the
// broker would charge that death to the task the main thread runs (a WorkerLostError
// when max_retries is 0). SIGTERM and SIGINT are blocked here: they go to the main
// thread, which finishes its TASK and leaves, and cannot interrupt this thread's poll.
// EINTR is retried all the same (a signal whose handler a task installed, or a stop and
// continue, can still cause one); any other failure ends the executor as a planned exit
// (leave()).
class Heartbeat {
 public:
  Heartbeat(zmq::context_t& ctx, const AgentOptions& o, const std::string& id)
      : ctx_(ctx), options_(o), id_(id + proto::kHeartbeatSuffix) {
    thread_ = thread_without_handled_signals([this] { run(); });
  }
  ~Heartbeat() {
    stop_ = true;
    thread_.join();
  }
  // True once per loss of the broker.
  bool lost() { return lost_.exchange(false); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Times {
    Clock::time_point last_echo, next_beat;
  };

  void run() noexcept {
    pthread_setname_np(pthread_self(), "mqpool-beat");  // ps -L, and the tests, find it
    try {
      beat();
    } catch (...) {
      leave();
    }
  }

  void beat() {
    zmq::socket_t sock(ctx_, zmq::socket_type::dealer);
    proto::configure_dealer(sock, proto::Traffic::control, id_, 0, options_.max_message);
    if (options_.curve) detail::apply_curve(sock, *options_.curve);
    sock.connect(options_.endpoint);
    Times t{Clock::now(), Clock::now()};
    while (!stop_) {
      try {
        detail::fault_point("executor.heartbeat");  // a test's hook may throw here
        pass(sock, t);
      } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;  // EINTR: nothing is wrong; go round again
      }
    }
  }

  // One round: a beat when one is due, the loss check, a short wait, the echoes.
  void pass(zmq::socket_t& sock, Times& t) {
    const auto interval = std::chrono::milliseconds(options_.heartbeat_ms);
    const auto now = Clock::now();
    if (now >= t.next_beat) {
      proto::send(sock, proto::make(proto::Cmd::heartbeat, std::vector<int>{}), false);
      t.next_beat = now + interval;
    }
    if (now - t.last_echo > interval * options_.liveness) {
      lost_ = true;
      t.last_echo = now;
    }
    // Short polls so that the destructor's stop flag is seen promptly.
    zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1,
              std::min<std::chrono::milliseconds>(interval, std::chrono::milliseconds(100)));
    // A malformed message is no echo: receiver_ drops it (common/protocol.hpp).
    receiver_.drain(sock, false, [this, &t](const proto::Message& m) {
      if (m.cmd == proto::Cmd::reset)
        lost_ = true;  // the broker does not know this executor (restarted, or expired it)
      else
        t.last_echo = Clock::now();
    });
  }

  // Ends the executor at once, as a planned exit (kPlannedExit, as maxtasksperchild):
  // without heartbeats the broker would soon declare it lost and charge its task, so
  // waiting for the task to end is no better. The agent reports the exit as planned and
  // the broker hands every chunk this executor held back to the queue, uncharged; the
  // task that was running runs again elsewhere (a DONE not yet on the wire is lost, and
  // its chunk runs again too; the client still gets each result once).
  [[noreturn]] void leave() noexcept {
    try {
      const WireError e = detail::describe_current_exception("");
      detail::log().error(
          "executor: its heartbeat thread failed ({}: {}); leaving, as a planned exit, so that "
          "the broker hands its work back",
          e.type, e.message);
    } catch (...) {
      // Not even the log: leave all the same.
    }
    _exit(kPlannedExit);
  }

  zmq::context_t& ctx_;
  const AgentOptions& options_;
  std::string id_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> lost_{false};
  proto::Receiver receiver_{"executor", "the broker on the heartbeat socket"};  // thread_'s
  std::thread thread_;
};

// SIGTERM from a draining agent, or a SIGINT sent to this process (a terminal's Ctrl-C
// reaches the agent only: each executor leads a process group of its own, agent.cpp):
// finish the TASK being run, answer it, leave. A handler rather than SIG_IGN, so that
// the commands mqpool.exec starts get the default action back (exec_task.cpp).
volatile std::sig_atomic_t g_leave = 0;
void on_leave(int) { g_leave = 1; }  // not extern "C": see broker/src/main.cpp

void restore_signals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : {SIGCHLD, SIGPIPE}) signal(s, SIG_DFL);
  struct sigaction sa {};
  sa.sa_handler = on_leave;
  sa.sa_flags = SA_RESTART;  // a task's own system calls go on; ZeroMQ's wait returns EINTR
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

// The initializer's error, which every task of this executor then fails with; nothing
// when there is no initializer or it succeeded. Not a reason to exit: a replacement
// would fail the same way, forever.
std::optional<WireError> run_initializer(const AgentOptions& options) {
  if (!options.initializer) return std::nullopt;
  try {
    options.initializer();
    return std::nullopt;
  } catch (...) {
    WireError e = detail::describe_current_exception("initializer");
    e.code = ErrorCode::initializer;
    e.message = "pool initializer failed: " + e.message;
    return e;
  }
}

proto::Ready make_ready(const AgentOptions& options, std::uint64_t agent, std::uint32_t pid) {
  const int max = options.maxtasksperchild;
  return proto::Ready{agent,
                      pid,
                      detail::hostname(),
                      max > 0 ? std::min<std::uint32_t>(options.credit, max) : options.credit,
                      max > 0 ? 1u : 0u,
                      options.heartbeat_ms,
                      options.liveness};
}

// The DONE for a TASK whose header decoded but whose argument frames are not one per
// chunk (missing or extra): which frame is whose cannot be known, so every task of every
// chunk it names fails with SerializationError. The broker then gets its credit and the
// chunks back, and the callers an error instead of a wait without end.
void fail_task(const std::vector<proto::TaskSpec>& specs, std::size_t frames,
               std::vector<zmq::message_t>& out) {
  auto plural = [](std::size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  const std::string what = "malformed TASK from the broker: " + plural(specs.size(), "chunk") +
                           " but " + plural(frames, "argument frame");
  detail::log().warn("executor: {}; its tasks fail with SerializationError", what);
  WireError e{ErrorCode::serialization, "mqpool::SerializationError", "", "", detail::host_pid()};
  for (const proto::TaskSpec& spec : specs) {
    e.task = spec.fn;
    e.message = "task '" + spec.fn + "': " + what;
    proto::fail_frames(spec.count, e, out);
  }
}

// Runs one TASK and returns its DONE (chunk ids in TASK order, errors and values frames
// per chunk), and in `chunks` how many chunks it named. Nothing when its header does not
// decode: see serve() for what the executor does then.
std::optional<proto::Message> run_task(const proto::Message& task,
                                       const std::optional<WireError>& init_error,
                                       SharedMemory& shared, std::size_t& chunks) {
  std::vector<proto::TaskSpec> specs;
  try {
    specs = proto::decode<std::vector<proto::TaskSpec>>(task);
  } catch (const SerializationError& e) {
    detail::log().error(
        "executor: cannot read a TASK's header ({}); leaving, as a planned exit, so that the "
        "broker hands back the chunks it holds for this executor",
        e.what());
    return std::nullopt;
  }
  std::vector<std::uint64_t> ids;
  ids.reserve(specs.size());
  for (const proto::TaskSpec& spec : specs) ids.push_back(spec.chunk);
  proto::Message done{{}, proto::Cmd::done, proto::encode(ids), {}};
  done.frames.reserve(2 * specs.size());
  if (specs.size() != task.frames.size())
    fail_task(specs, task.frames.size(), done.frames);
  else
    for (std::size_t i = 0; i < specs.size(); ++i)
      run_one(specs[i], task.frames[i], init_error, shared, done.frames);
  chunks = specs.size();
  return done;
}

// Answers TASKs until maxtasksperchild chunks are done, SIGTERM/SIGINT, or a fault;
// returns the exit code.
int serve(zmq::socket_t& sock, Heartbeat& heartbeat, const proto::Ready& ready,
          const AgentOptions& options, const std::optional<WireError>& init_error,
          SharedMemory& shared) {
  const std::size_t max = static_cast<std::size_t>(std::max(options.maxtasksperchild, 0));
  std::size_t chunks_done = 0;
  proto::Receiver receiver("executor", "the broker");
  while ((max == 0 || chunks_done < max) && g_leave == 0) {
    if (heartbeat.lost()) proto::send(sock, proto::make(proto::Cmd::ready, ready), false);
    // Its own blocking recv, not Receiver::drain(): it waits (ZMQ_RCVTIMEO: at least once
    // per heartbeat interval, for heartbeat.lost()) and takes one TASK at a time, and a
    // TASK whose header does not decode ends the loop (below). A malformed envelope is
    // dropped by the one policy (common/protocol.hpp).
    std::optional<proto::Message> m;
    try {
      m = proto::recv(sock, false, zmq::recv_flags::none);
    } catch (const SerializationError& e) {
      receiver.drop({}, e.what());
      continue;
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // SIGTERM: the loop's condition says leave
      return 1;
    }
    if (!m || m->cmd != proto::Cmd::task) continue;
    if (g_leave != 0) break;  // told to leave: this TASK goes back with the planned exit
    std::size_t chunks = 0;
    std::optional<proto::Message> done = run_task(*m, init_error, shared, chunks);
    // A header that does not decode names no chunk this executor could answer for: ids
    // picked out of bytes that are otherwise wrong may name another executor's chunk, or
    // a queued one, and the broker takes a DONE for any chunk it holds. Nor would a
    // second READY free anything (the broker only updates the executor's record: its
    // credit and chunks stay taken). A planned exit does: the agent reports it as one,
    // and the broker hands back every chunk it held for this executor, neither charged
    // a loss nor split (PROTOCOL.md §7), to the replacement the agent forks. A broker
    // that keeps sending such TASKs costs a fork and an error line each time, rather than
    // failing work that its callers did not spoil.
    if (!done) return kPlannedExit;
    proto::send(sock, std::move(*done), false);
    chunks_done += chunks;
  }
  return kPlannedExit;
}

}  // namespace

void run_executor(const AgentOptions& options, std::uint64_t agent) {
  const pid_t agent_pid = getppid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // the agent is single-threaded: this is its lifetime
  if (getppid() != agent_pid) _exit(1);
  restore_signals();
  // Keep large buffers (task payloads) in the heap instead of a fresh mmap per message:
  // page faults on new memory cost more than the copies themselves. This is our own
  // process, so its allocator is ours to tune.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);

  int code = kPlannedExit;
  {
    zmq::context_t ctx(1);  // our own: the agent's context is never touched after fork
    // ZeroMQ's I/O thread runs as SCHED_BATCH: woken to send a DONE, it no longer
    // preempts the task that comes next on this process's main thread, but runs when a
    // CPU is free or at the next tick: on busy cores that wake-up preemption cost every
    // task time (measured: docs/PERFORMANCE.md, "What each design choice bought"). A
    // blocked main thread leaves the CPU free, so latency does not suffer.
    ctx.set(zmq::ctxopt::thread_sched_policy, SCHED_BATCH);
    zmq::socket_t sock(ctx, zmq::socket_type::dealer);
    const auto pid = static_cast<std::uint32_t>(getpid());
    // ZeroMQ's default linger: the last DONE is flushed before the context closes.
    proto::configure_dealer(sock, proto::Traffic::work, proto::executor_id(agent, pid),
                            std::nullopt, options.max_message);
    if (options.curve) detail::apply_curve(sock, *options.curve);
    sock.connect(options.endpoint);

    const std::optional<WireError> init_error = run_initializer(options);
    const proto::Ready ready = make_ready(options, agent, pid);
    proto::send(sock, proto::make(proto::Cmd::ready, ready), false);
    Heartbeat heartbeat(ctx, options, proto::executor_id(agent, pid));
    // Wake at least once per heartbeat interval to see heartbeat.lost().
    sock.set(zmq::sockopt::rcvtimeo, static_cast<int>(options.heartbeat_ms));
    SharedMemory shared{options.shared_memory_threshold > 0 ? options.client_pid : 0,
                        options.shared_memory_threshold,
                        options.max_message,
                        {},
                        {}};
    code = serve(sock, heartbeat, ready, options, init_error, shared);
    // The client maps the last values it got from here after this process has sent them:
    // their segments must outlive that (for no longer than the broker would wait for a
    // silent executor).
    shared.values.wait_returned(std::chrono::milliseconds(options.heartbeat_ms) * options.liveness);
    // Leaving scope flushes the last DONE (linger) before the context closes.
  }
  _exit(code);
}

}  // namespace mqpool::worker
