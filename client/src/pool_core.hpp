// The non-template heart of Pool: lifecycle state, the local broker thread and worker
// agent, and the client session.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "broker/loop.hpp"
#include "common/fork_clean.hpp"
#include "mqpool/options.hpp"
#include "session.hpp"

namespace mqpool::detail {

class PoolCore {
 public:
  // Validates the options, forks the local agent (fork_clean(), before this pool starts
  // a thread), then starts the broker thread and the session. Throws
  // std::invalid_argument.
  explicit PoolCore(PoolOptions options);
  ~PoolCore();

  std::uint64_t new_job();
  void submit(std::uint64_t job_id, std::shared_ptr<Job> job, const std::string& fn,
              std::vector<EncodedChunk> chunks, bool last);
  void abandon(std::uint64_t job_id) { session_->abandon(job_id); }
  // Jobs the session holds a record of (tests check that none leaks).
  std::size_t open_jobs() const { return session_->open_jobs(); }
  int workers() const { return processes_; }
  std::uint64_t first_index() const { return first_index_; }
  bool accepting() const;
  void close();
  void terminate();
  void join();

 private:
  enum class State { running, closed, terminated, joined };

  std::unique_ptr<Session> new_session(bool cluster) const;
  void start_local();
  void dispatch_or_wake();
  void stop_agent(bool kill_now);

  PoolOptions options_;
  int processes_ = 0;
  std::uint32_t timeout_ms_ = 0;

  mutable std::mutex mu_;  // guards state_ and the agent fields
  State state_ = State::running;
  std::uint64_t next_job_;  // guarded by mu_
  const std::uint64_t first_index_;

  // Local mode: the agent we forked, the pipe whose closing tells it we are gone, and the
  // private directory of the ipc endpoint.
  pid_t agent_pid_ = -1;
  int agent_pipe_ = -1;
  std::string tmpdir_;

  ForkSafeContext ctx_;  // made and closed under fork_clean()'s mutex
  std::unique_ptr<Session> session_;
  std::unique_ptr<broker::Loop> broker_;  // local: its thread also drives session_
  std::thread broker_thread_;
  std::unique_ptr<RemoteLink> link_;  // cluster: drives session_ over a DEALER
};

}  // namespace mqpool::detail
