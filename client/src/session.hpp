// The client session: the client side of the protocol. Callers hand it work through a
// queue and a wake-up (an eventfd); one I/O thread drives it, batching whatever waits
// into one SUBMIT and routing RESULT chunks to their jobs. In a local pool that thread is
// the broker's own (the session is its LocalClient: no socket, no extra hand-off); in a
// cluster pool it is a RemoteLink's, which owns a DEALER to the broker.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "broker/local_client.hpp"
#include "common/curve.hpp"
#include "common/protocol.hpp"
#include "common/shm.hpp"
#include "mqpool/detail/job.hpp"

namespace mqpool::detail {

class SubmitBuilder;

// Hands one RESULT chunk's outcome frames to its job; returns how many were new. Throws
// SerializationError when the chunk cannot be taken (Session::deliver then fails the job).
// Needs nothing of a session: tests/fuzz/fuzz_values.cpp calls it with hostile frames.
std::uint32_t deliver_chunk(Job& job, const proto::ResultSpec& spec,
                            const zmq::message_t& errors_frame, const zmq::message_t& values_frame);

// Local pools: chunks of arguments from `threshold` bytes (0: none) up to `max_message`
// travel through shared memory, and so may values (common/shm.hpp).
struct SharedMemoryLimits {
  std::int64_t threshold = 0;
  std::int64_t max_message = 0;
};

class Session final : public broker::LocalClient {
 public:
  // Single tasks travel in batches (take). `keep_sent`: every chunk sent is kept until
  // all its outcomes are in, so that it can be sent again to a broker that lost it (a
  // cluster pool; a local broker cannot lose work).
  explicit Session(std::uint32_t max_retries, bool keep_sent = false,
                   SharedMemoryLimits shared = {});
  ~Session() override;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Queues chunks of a job (see detail::submit). Thread-safe; never blocks on I/O.
  // Throws PoolStateError once the driver's thread has failed (break_down).
  // Returns true when the queue was empty: the caller must then have it served, by
  // wake() or by serving it on its own thread.
  [[nodiscard]] bool submit(std::uint64_t job_id, std::shared_ptr<Job> job, const std::string& fn,
                            std::uint32_t timeout_ms, std::vector<EncodedChunk> chunks, bool last);
  // Fails every task without an outcome with `e` and asks the broker to drop this
  // client's work. Thread-safe; returns once done (or once the session has stopped).
  void fail_all(const WireError& e);
  // Forgets a job whose submission failed half way (its input threw): tasks already sent
  // run, and their outcomes are dropped. Thread-safe; does not block.
  void abandon(std::uint64_t job_id);
  // Waits until every submitted task has its outcome (or the session has stopped).
  void wait_idle();
  // Ends the driver's loop and releases every waiter. Thread-safe.
  void stop();
  // Wakes the driver to take what is queued. Thread-safe.
  void wake();

  // The driver's side: the one I/O thread, or (local pool) a submitter that holds the
  // broker loop's lock in Loop::dispatch_on_submitter, which calls take(out, false).
  int wake_fd() const override { return wake_fd_; }
  bool take(std::vector<proto::Message>& out, bool loop_thread) override;
  void deliver(proto::Message& m) override;
  // SUBMITs of every chunk sent that still lacks an outcome (keep_sent only): for a
  // broker that restarted or forgot this client. The job drops outcomes it already has.
  void resubmit(std::vector<proto::Message>& out);
  // Fails every task without an outcome with `e`, sending nothing (the broker is gone).
  void fail_outstanding(const WireError& e);
  // Runs the driver's loop on the calling thread under the one policy for a driver
  // thread: if `loop` throws, the cause is logged and the session breaks down with an
  // error of `code` saying "<failed>: <cause>". Never throws, never ends the process.
  void drive(const std::function<void()>& loop, ErrorCode code, const std::string& failed) noexcept;
  // The driver's thread is ending on a failure: every task without an outcome, queued
  // ones included, fails with `e`, and from now on submit() throws PoolStateError with
  // its message. Called on the driver's thread, as its last act.
  void break_down(const WireError& e);
  // Chunks kept for resubmission (keep_sent), or for their shared memory.
  std::size_t unanswered() const { return sent_.size(); }
  // Jobs the session holds a record of, as of the driver's last turn. Thread-safe.
  std::size_t open_jobs() const { return open_jobs_.load(std::memory_order_relaxed); }

 private:
  struct Op {
    enum Kind { submit, fail_all, abandon } kind = submit;
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

  // A chunk sent to the broker and not yet answered in full: kept for resubmission
  // (keep_sent), or for the shared memory that holds its arguments (a local pool).
  struct SentChunk {
    proto::ChunkSpec spec;
    zmq::message_t args;              // shares the sent frame's buffer
    std::uint32_t remaining;          // tasks without an outcome
    shm::ArgSegments::Lease segment;  // its arguments in shared memory, if there
  };

  // A whole job of one task without a time limit: it may travel in a coalesced batch.
  static bool single(const Op& op);
  bool push(Op&& op);
  void settle(std::uint64_t done);
  std::size_t take_batch(std::size_t o, SubmitBuilder& submits);
  void take_submit(Op& op, SubmitBuilder& submits);
  std::size_t single_task_run(const Op& op, std::size_t i) const;
  void take_task_batch(Op& op, std::size_t i, std::size_t end, SubmitBuilder& submits);
  void take_fail_all(const WireError& e, std::vector<proto::Message>& out);
  std::uint64_t drop_job(std::uint64_t job_id);
  void add_chunk(SubmitBuilder& submits, const proto::ChunkSpec& spec, Buffer&& args);
  void keep(const proto::ChunkSpec& spec, zmq::message_t& args, shm::ArgSegments::Lease segment);
  void map_shared(proto::Message& m, const std::vector<proto::ResultSpec>& specs);
  void answered(std::uint64_t job, std::uint64_t seq, std::uint32_t fresh);

  int wake_fd_ = -1;
  std::uint32_t max_retries_;
  std::unordered_map<std::uint64_t, JobRec> jobs_;  // the driver only (see above)
  std::atomic<std::size_t> open_jobs_{0};           // jobs_.size(), for any thread
  std::vector<Op> ops_taken_;                       // the driver only (see above)
  std::uint64_t next_batch_ = 0;                    // the driver only (see above)
  bool keep_sent_;
  SharedMemoryLimits shared_;
  shm::ArgSegments arg_segments_;  // the driver only; outlives sent_'s leases
  shm::Mappings value_mappings_;   // the driver only
  // By job and first seq; the driver only (see above).
  std::map<std::pair<std::uint64_t, std::uint64_t>, SentChunk> sent_;

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<Op> ops_;
  std::size_t fail_ops_ = 0;   // Op::fail_all entries in ops_
  std::uint64_t pending_ = 0;  // tasks submitted without an outcome
  std::uint64_t fails_done_ = 0;
  bool stop_ = false;
  std::shared_ptr<const WireError> broken_;  // why the driver's thread ended, if it failed
};

// A cluster pool's link to a remote broker: a thread that owns a DEALER and drives a
// Session over it. It greets the broker (HELLO, WELCOME), heartbeats both ways, and when
// the broker is lost (silence, RESET after a restart) greets it again and resubmits
// every unanswered chunk; a broker gone longer than `reconnect_timeout`, or one that
// says BYE, fails the outstanding tasks with ConnectionError.
class RemoteLink {
 public:
  struct Options {
    std::string endpoint;
    std::chrono::milliseconds connect_timeout{10000};
    std::chrono::milliseconds reconnect_timeout{60000};
    std::chrono::milliseconds heartbeat{1000};
    std::uint32_t liveness = 3;
    std::optional<CurveClient> curve;
    std::int64_t max_message = proto::kDefaultMaxMessage;
  };
  // Connects and waits up to `connect_timeout` for the broker's WELCOME; throws
  // ConnectionError naming the endpoint if none comes, or if the endpoint refuses (a
  // worker endpoint, a key it does not admit). Then starts the thread.
  RemoteLink(zmq::context_t& ctx, Options options, Session& session);
  // Says BYE (the broker drops this client's work), stops the session and the thread.
  ~RemoteLink();
  // Executors the broker had when it first welcomed this client (0: none yet).
  std::uint32_t executors_at_connect() const { return executors_at_connect_; }

 private:
  using Clock = std::chrono::steady_clock;
  void handshake();
  void run();
  void on_message(proto::Message& m, Clock::time_point now);
  void beat(Clock::time_point now);
  void lose(Clock::time_point now, const std::string& why);
  void on_handshake(Clock::time_point now);
  void send(proto::Message&& m);
  ConnectionError error(const std::string& what) const;
  WireError gone() const;

  Options options_;
  zmq::socket_t sock_;
  // Why the broker refuses this client's handshakes (common/curve.hpp).
  HandshakeWatch watch_;
  std::string refused_;  // its reason, while it does: work fails at once with it
  // The malformed-message policy for sock_ (common/protocol.hpp).
  proto::Receiver receiver_{"client", "the broker"};
  Session& session_;
  proto::Hello hello_;
  bool welcomed_ = false;  // the broker knows this client now
  std::uint32_t executors_at_connect_ = 0;
  bool expired_ = false;  // lost for longer than reconnect_timeout: work fails at once
  Clock::time_point last_heard_{}, lost_since_{}, next_beat_{};
  std::thread thread_;
};

}  // namespace mqpool::detail
