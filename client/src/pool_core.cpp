#include "pool_core.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "common/host.hpp"
#include "common/log.hpp"
#include "common/size.hpp"
#include "mqpool/registry.hpp"
#include "test_hooks.hpp"
#include "worker/agent.hpp"

namespace mqpool::detail {

namespace {

void validate(const PoolOptions& o) {
  auto bad = [](const std::string& what, long long v) {
    throw std::invalid_argument("PoolOptions::" + what + " must be >= 0, got " + std::to_string(v));
  };
  if (o.processes < 0) bad("processes", o.processes);
  if (o.maxtasksperchild < 0) bad("maxtasksperchild", o.maxtasksperchild);
  if (o.max_retries < 0) bad("max_retries", o.max_retries);
  if (o.task_timeout.count() < 0) bad("task_timeout", o.task_timeout.count());
  if (o.connect_timeout.count() <= 0)
    throw std::invalid_argument("PoolOptions::connect_timeout must be > 0");
  if (o.reconnect_timeout.count() < 0) bad("reconnect_timeout", o.reconnect_timeout.count());
  if (o.shared_memory_threshold < 0) bad("shared_memory_threshold", o.shared_memory_threshold);
  if (o.heartbeat_interval.count() <= 0 || o.heartbeat_liveness <= 0)
    throw std::invalid_argument(
        "PoolOptions::heartbeat_interval and heartbeat_liveness must be > 0");
  // A local pool's sockets are in a directory only its user can open; keys there would
  // be a setting that does nothing, and security settings must not pass in silence.
  if (o.connect.empty() && (!o.curve_secret_file.empty() || !o.broker_key_file.empty()))
    throw std::invalid_argument(
        "PoolOptions::curve_secret_file and broker_key_file are for a cluster pool (connect)");
  check_max_message("PoolOptions::max_message", o.max_message);
}

// In the forked agent: keep stdio and the pipe; other descriptors belong to the client
// (its sockets, other pools' pipes) and must not be held open by us.
void close_inherited_fds(int keep) {
  for (int fd = 3; fd < keep; ++fd) ::close(fd);
  ::close_range(static_cast<unsigned>(keep) + 1, ~0u, 0);
}

std::string make_private_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mqpool-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr)  // mode 0700
    throw std::system_error(errno, std::generic_category(), "mqpool: mkdtemp");
  return tmpl;
}

}  // namespace

PoolCore::PoolCore(PoolOptions options)
    : options_(std::move(options)),
      next_job_(g_test_hooks.first_job),
      first_index_(g_test_hooks.first_index) {
  validate(options_);
  Registry::instance().validate();
  timeout_ms_ = static_cast<std::uint32_t>(options_.task_timeout.count());
  if (!options_.connect.empty()) {
    session_ = new_session(true);
    link_ = std::make_unique<RemoteLink>(
        ctx_.get(),
        RemoteLink::Options{
            options_.connect, options_.connect_timeout, options_.reconnect_timeout,
            options_.heartbeat_interval, static_cast<std::uint32_t>(options_.heartbeat_liveness),
            load_curve_client(options_.curve_secret_file, options_.broker_key_file,
                              "PoolOptions::curve_secret_file", "PoolOptions::broker_key_file"),
            options_.max_message},
        *session_);
    // `processes` describes local workers and is ignored here; map chunks are sized
    // for the executors the cluster had when this pool joined it.
    processes_ =
        link_->executors_at_connect() > 0 ? static_cast<int>(link_->executors_at_connect()) : 8;
    return;
  }
  processes_ = options_.processes > 0 ? options_.processes : default_processes();
  start_local();
}

void PoolCore::start_local() {
  tmpdir_ = make_private_dir();
  const std::string backend = "ipc://" + tmpdir_ + "/workers";
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    throw std::system_error(errno, std::generic_category(), "mqpool: pipe");
  // Fork before this pool starts any thread or socket: the agent is then a clean,
  // single-threaded copy of the program, able to fork executors later. fork_clean():
  // the program's other threads may hold locks that the agent needs.
  const pid_t pid = fork_clean();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "mqpool: fork");
  if (pid == 0) {
    ::close(fds[1]);
    close_inherited_fds(fds[0]);
    worker::AgentOptions a;
    a.endpoint = backend;
    a.processes = processes_;
    a.maxtasksperchild = options_.maxtasksperchild;
    a.initializer = options_.initializer;
    a.parent_fd = fds[0];
    a.heartbeat_ms = static_cast<std::uint32_t>(options_.heartbeat_interval.count());
    a.liveness = static_cast<std::uint32_t>(options_.heartbeat_liveness);
    a.grace = std::chrono::milliseconds(0);  // terminate() kills at once
    a.max_message = options_.max_message;
    a.client_pid = getppid();
    a.shared_memory_threshold = options_.shared_memory_threshold;
    int rc = 1;
    try {
      rc = worker::run_agent(a);
    } catch (const std::exception& e) {
      log().error("agent: {}", e.what());
    }
    // The agent ends after the client: a client killed by SIGKILL cannot remove its
    // socket folder, so the agent does (the client's own removal then finds nothing).
    std::error_code ignored;
    std::filesystem::remove_all(tmpdir_, ignored);
    _exit(rc);
  }
  ::close(fds[0]);
  agent_pid_ = pid;
  agent_pipe_ = fds[1];

  try {
    // The broker thread serves this pool's session directly: no client socket at all.
    session_ = new_session(false);
    broker_ = std::make_unique<broker::Loop>(ctx_.get(), "", backend, session_.get(),
                                             broker::LoopOptions{{}, options_.max_message});
    // Whatever ends the thread early fails every outstanding task with its cause.
    broker_thread_ = std::thread([this] {
      session_->drive([this] { broker_->run(); }, ErrorCode::pool_state,
                      "the pool's broker thread failed");
    });
  } catch (...) {
    stop_agent(true);  // the destructor will not run: leave no process behind
    ctx_.get().shutdown();
    if (broker_thread_.joinable()) broker_thread_.join();
    throw;
  }
}

PoolCore::~PoolCore() {
  {
    std::lock_guard lock(mu_);
    if (state_ == State::running) state_ = State::closed;
  }
  try {
    join();
  } catch (const std::exception& e) {
    log().error("pool: {}", e.what());
  }
  link_.reset();
  session_->stop();  // the broker loop returns
  if (broker_thread_.joinable()) broker_thread_.join();
  broker_.reset();
  session_.reset();
  ctx_.close();
  if (!tmpdir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(tmpdir_, ec);
  }
}

// A cluster session keeps what it sent until answered: a broker may restart.
std::unique_ptr<Session> PoolCore::new_session(bool cluster) const {
  return std::make_unique<Session>(
      static_cast<std::uint32_t>(options_.max_retries), cluster,
      SharedMemoryLimits{cluster ? 0 : options_.shared_memory_threshold, options_.max_message});
}

std::uint64_t PoolCore::new_job() {
  std::lock_guard lock(mu_);
  if (state_ != State::running) throw PoolStateError("Pool not running");
  return next_job_++;
}

void PoolCore::submit(std::uint64_t job_id, std::shared_ptr<Job> job, const std::string& fn,
                      std::vector<EncodedChunk> chunks, bool last) {
  {
    std::lock_guard lock(mu_);
    if (state_ == State::terminated || state_ == State::joined)
      throw PoolStateError("Pool not running");
  }
  if (timeout_ms_ > 0) {
    // A time limit is per task, and the broker times chunks: give every task its own.
    std::vector<EncodedChunk> single;
    for (EncodedChunk& c : chunks) {
      const char* p = c.args.data();
      std::uint64_t i = c.first;
      for (std::size_t n : object_sizes(p, c.args.size(), c.count)) {
        EncodedChunk one;
        one.first = i++;
        one.count = 1;
        one.args.write(p, n);
        p += n;
        single.push_back(std::move(one));
      }
    }
    chunks = std::move(single);
  }
  if (session_->submit(job_id, std::move(job), fn, timeout_ms_, std::move(chunks), last))
    dispatch_or_wake();
}

// The first op queued since the driver last took: a local pool's submitter dispatches it
// itself when the broker's thread is idle (Loop::dispatch_on_submitter says why and
// when); otherwise, and always in a cluster pool, the driver's thread is woken.
void PoolCore::dispatch_or_wake() {
  if (!(broker_ && broker_->dispatch_on_submitter())) session_->wake();
}

bool PoolCore::accepting() const {
  std::lock_guard lock(mu_);
  return state_ == State::running || state_ == State::closed;
}

void PoolCore::close() {
  std::lock_guard lock(mu_);
  if (state_ == State::running) state_ = State::closed;
}

void PoolCore::terminate() {
  {
    std::lock_guard lock(mu_);
    if (state_ == State::terminated || state_ == State::joined) return;
    state_ = State::terminated;
  }
  stop_agent(true);
  session_->fail_all(WireError{ErrorCode::pool_state, "",
                               "the pool was terminated before the task finished", "", ""});
}

void PoolCore::join() {
  {
    std::lock_guard lock(mu_);
    if (state_ == State::running)
      throw PoolStateError("join() called on a running pool: call close() or terminate() first");
    if (state_ == State::joined) return;
  }
  session_->wait_idle();
  stop_agent(false);
  std::lock_guard lock(mu_);
  state_ = State::joined;
}

// Local mode: tells the agent to stop (closing its pipe, or SIGTERM when the executors
// must die mid-task) and reaps it. The agent kills and reaps its executors before exiting.
void PoolCore::stop_agent(bool kill_now) {
  std::lock_guard lock(mu_);
  if (agent_pid_ < 0) return;
  if (kill_now) ::kill(agent_pid_, SIGTERM);
  if (agent_pipe_ >= 0) {
    ::close(agent_pipe_);
    agent_pipe_ = -1;
  }
  int status;
  while (waitpid(agent_pid_, &status, 0) < 0 && errno == EINTR) {
  }
  agent_pid_ = -1;
}

std::uint64_t new_job(PoolCore& core) { return core.new_job(); }
void submit(PoolCore& core, std::uint64_t job_id, std::shared_ptr<Job> job, const std::string& fn,
            std::vector<EncodedChunk> chunks, bool last) {
  core.submit(job_id, std::move(job), fn, std::move(chunks), last);
}
void abandon(PoolCore& core, std::uint64_t job_id) noexcept {
  try {
    core.abandon(job_id);
  } catch (...) {
    // Out of memory for one small op: the job's record stays, as a leak, not a crash.
  }
}
int workers(const PoolCore& core) { return core.workers(); }
std::uint64_t first_index(const PoolCore& core) { return core.first_index(); }
bool accepting(const PoolCore& core) { return core.accepting(); }

}  // namespace mqpool::detail
