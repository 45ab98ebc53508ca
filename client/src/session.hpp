// The client session: the client side of the protocol. Callers hand it work through a
// queue and a wake-up (an eventfd); one I/O thread drives it, batching whatever waits
// into one SUBMIT and routing RESULT chunks to their jobs. In a local pool that thread is
// the broker's own (the session is its LocalClient: no socket, no extra hand-off); in a
// cluster pool it is a RemoteLink's, which owns a DEALER to the broker.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "local_client.hpp"
#include "mqpool/detail/job.hpp"
#include "protocol.hpp"

namespace mqpool::detail {

class Session final : public broker::LocalClient {
 public:
  // `coalesce`: single-task jobs that wait together may travel as one chunk (not when
  // executors count chunks for maxtasksperchild: each call must count).
  Session(std::uint32_t max_retries, bool coalesce);
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Queues chunks of a job (see detail::submit). Thread-safe; never blocks on I/O.
  // Returns true when the queue was empty: the caller must then have it served, by
  // wake() or by serving it on its own thread.
  [[nodiscard]] bool submit(std::uint64_t job_id, std::shared_ptr<Job> job, const std::string& fn,
              std::uint32_t timeout_ms, std::vector<EncodedChunk> chunks, bool last);
  // Fails every task without an outcome with `e` and asks the broker to drop this
  // client's work. Thread-safe; returns once done (or once the session has stopped).
  void fail_all(const WireError& e);
  // Waits until every submitted task has its outcome (or the session has stopped).
  void wait_idle();
  // Ends the driver's loop and releases every waiter. Thread-safe.
  void stop();
  // Wakes the driver to take what is queued. Thread-safe.
  void wake();

  // The driver's side (the one I/O thread).
  int wake_fd() const override { return wake_fd_; }
  bool take(std::vector<proto::Message>& out, bool loop_thread) override;
  void deliver(proto::Message& m) override;

 private:
  struct Op {
    enum Kind { submit, fail_all } kind = submit;
    std::uint64_t job_id = 0;
    std::shared_ptr<Job> job;
    std::string fn;
    std::uint32_t timeout_ms = 0;
    std::vector<EncodedChunk> chunks;
    bool last = false;
    std::shared_ptr<const WireError> error;  // fail_all only: kept out of line, Ops are many
  };
  struct JobRec {
    std::shared_ptr<Job> job;
    std::uint64_t outstanding = 0;  // tasks sent without an outcome
    bool last = false;
  };

  // A whole job of one task without a time limit: it may travel in a coalesced batch.
  static bool single(const Op& op);
  bool push(Op&& op);
  void settle(std::uint64_t done);

  int wake_fd_ = -1;
  std::uint32_t max_retries_;
  bool coalesce_;
  std::unordered_map<std::uint64_t, JobRec> jobs_;  // driver thread only
  std::vector<Op> ops_taken_;                        // driver thread only
  std::uint64_t next_batch_ = 0;                     // driver thread only

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<Op> ops_;
  std::size_t fail_ops_ = 0;  // Op::fail_all entries in ops_
  std::uint64_t pending_ = 0;  // tasks submitted without an outcome
  std::uint64_t fails_done_ = 0;
  bool stop_ = false;
};

// A cluster pool's link to a remote broker: a thread that owns a DEALER and drives a
// Session over it.
class RemoteLink {
 public:
  // Connects, waits up to `connect_timeout` for the handshake (ConnectionError if it does
  // not complete), then starts the thread.
  RemoteLink(zmq::context_t& ctx, const std::string& endpoint, Session& session,
             std::chrono::milliseconds connect_timeout);
  // Stops the session and the thread.
  ~RemoteLink();

 private:
  void run();

  zmq::socket_t sock_;
  Session& session_;
  std::thread thread_;
};

}  // namespace mqpool::detail
