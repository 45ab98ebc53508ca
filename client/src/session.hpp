// The client session: one I/O thread that owns the DEALER to the broker. Callers hand
// it work through a queue and a wake-up (an eventfd); it batches whatever is waiting
// into one SUBMIT, and routes RESULT chunks to their jobs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "mqpool/detail/job.hpp"
#include "protocol.hpp"

namespace mqpool::detail {

class Session {
 public:
  // Connects to the broker's client endpoint and starts the I/O thread. With a
  // `connect_timeout`, first waits that long for the connection's handshake and throws
  // ConnectionError if it does not complete.
  Session(zmq::context_t& ctx, const std::string& endpoint, std::uint32_t max_retries,
          std::chrono::milliseconds connect_timeout = std::chrono::milliseconds(0));
  // Stops the I/O thread; outcomes still in flight are dropped.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Sends chunks of a job (see detail::submit). Thread-safe; never blocks on I/O.
  void submit(std::uint64_t job_id, std::shared_ptr<Job> job, const std::string& fn,
              std::uint32_t timeout_ms, std::vector<EncodedChunk> chunks, bool last);
  // Fails every task without an outcome with `e` and asks the broker to drop this
  // client's work. Thread-safe; returns once done.
  void fail_all(const WireError& e);
  // Waits until every submitted task has its outcome. Thread-safe.
  void wait_idle();

 private:
  struct Op {
    enum Kind { submit, fail_all } kind = submit;
    std::uint64_t job_id = 0;
    std::shared_ptr<Job> job;
    std::string fn;
    std::uint32_t timeout_ms = 0;
    std::vector<EncodedChunk> chunks;
    bool last = false;
    WireError error;
  };
  struct JobRec {
    std::shared_ptr<Job> job;
    std::uint64_t outstanding = 0;  // tasks sent without an outcome
    bool last = false;
  };

  void await_handshake(zmq::context_t& ctx, const std::string& endpoint,
                       std::chrono::milliseconds timeout);
  void push(Op&& op);
  void run();
  void process(std::vector<Op>& ops);
  void on_result(proto::Message& m);
  void settle(std::uint64_t done);

  zmq::socket_t sock_;
  int wake_fd_ = -1;
  std::uint32_t max_retries_;
  std::thread thread_;
  std::unordered_map<std::uint64_t, JobRec> jobs_;  // I/O thread only

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::vector<Op> ops_;
  std::uint64_t pending_ = 0;   // tasks submitted without an outcome
  std::uint64_t fails_done_ = 0;
  bool stop_ = false;
};

}  // namespace mqpool::detail
