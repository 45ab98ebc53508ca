// The broker's dispatch logic as a state machine without sockets: messages and the
// current time go in, messages to send come out. The event loop (broker_loop.cpp)
// owns the sockets; unit tests drive this class directly with an injected clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <queue>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "protocol.hpp"

namespace mqpool::broker {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

enum class Side { client, worker };

struct Outgoing {
  Side side;
  proto::Message msg;  // msg.peer is the destination
};

struct Counters {
  std::uint64_t submitted = 0, done = 0, failed = 0, retried = 0, malformed = 0, duplicates = 0;
};

class BrokerCore {
 public:
  // A message from the client-facing socket. Throws SerializationError on a bad header
  // (the caller counts and drops it; state is unchanged).
  void on_client(proto::Message&& m, TimePoint now);
  // A message from the worker-facing socket (executors and agents). Throws SerializationError.
  void on_worker(proto::Message&& m, TimePoint now);
  // Expires deadlines that have passed.
  void on_tick(TimePoint now);
  // When on_tick next has work to do; TimePoint::max() if never.
  TimePoint next_deadline() const;
  // Messages to send, in order; the outbox is left empty.
  std::vector<Outgoing> take_outbox();

  std::size_t queued() const { return queue_live_; }
  std::size_t running() const { return chunks_.size() - queue_live_; }
  std::size_t executors() const { return executors_.size(); }
  const Counters& counters() const { return counters_; }
  Counters& mutable_counters() { return counters_; }

 private:
  struct Chunk {
    std::string client;
    proto::ChunkSpec spec;
    zmq::message_t args;
    std::uint32_t losses = 0;  // deaths of an executor that ran nothing but this chunk
    bool suspect = false;      // was on an executor that died: now travels alone
    std::string executor;      // empty while queued
  };
  struct Executor {
    std::uint64_t agent = 0;
    std::uint32_t pid = 0;
    std::string name;  // "host:pid"
    std::uint32_t capacity = 1;
    std::uint32_t max_bundle = 0;
    std::uint32_t inflight = 0;  // TASK messages without a DONE
    // Intrusive links of the ready list it is on (bucket < 0: on none). unordered_map
    // nodes never move, so these pointers stay valid until the executor is erased.
    int bucket = -1;
    Executor* prev = nullptr;
    Executor* next = nullptr;
    const std::string* id = nullptr;
    bool doomed = false;         // being killed: no more work
    bool exclusive = false;      // runs a timed or suspect chunk: nothing else meanwhile
    std::unordered_set<std::uint64_t> chunks;
    struct Sent {
      TimePoint at;
      std::uint64_t tasks;
      std::string fn;
      std::vector<std::uint64_t> chunks;
    };
    std::deque<Sent> sent;  // TASK messages without a DONE, oldest first
    TimePoint last_done{};  // a prefetched TASK starts when the one before it is done
    TimePoint last_seen{};
    Clock::duration expiry{};  // silence longer than this: lost
  };
  struct ReadyList {
    Executor* head = nullptr;
    Executor* tail = nullptr;
  };
  struct Deadline {
    TimePoint at;
    std::uint64_t chunk;
    std::string executor;
    bool operator>(const Deadline& o) const { return at > o.at; }
  };

  void submit(const std::string& client, proto::ChunkSpec spec, zmq::message_t args);
  void on_ready(const std::string& peer, const proto::Ready& r, TimePoint now);
  void on_done(const std::string& peer, proto::Message& m, TimePoint now);
  void on_exited(const std::string& agent_peer, const proto::Exited& e);
  void cancel_client(const std::string& client);
  void dispatch(TimePoint now);
  void offer(Executor& e);
  Executor* pop_ready();
  void unlink(Executor& e);
  void requeue(std::uint64_t id, bool penalise, bool split, const std::string& reason);
  void split_to_front(std::unordered_map<std::uint64_t, Chunk>::iterator it,
                      const std::vector<std::uint32_t>& counts);
  bool split_head(std::unordered_map<std::uint64_t, Chunk>::iterator it,
                  const std::vector<std::uint32_t>& counts);
  void fail(std::uint64_t id, const WireError& e);
  void deliver(const std::string& client, const std::vector<proto::ResultSpec>& specs,
               std::vector<zmq::message_t> frames);
  void kill_executor(const std::string& id);
  void expire_silent(TimePoint now);
  void seen(const std::string& id, TimePoint now);
  void drop_executor(const std::string& id, bool its_fault, const std::string& reason);
  std::size_t share() const;
  void learn_cost(Executor& e, TimePoint now);
  bool prefetchable(const Executor& e) const;

  std::uint64_t next_chunk_ = 1;
  std::unordered_map<std::uint64_t, Chunk> chunks_;
  std::deque<std::uint64_t> queue_;  // chunk ids; entries of finished chunks are skipped
  std::size_t queue_live_ = 0;
  std::unordered_map<std::string, Executor> executors_;
  std::unordered_map<std::uint64_t, std::string> agents_;  // agent id -> routing id
  // Executors with credit left, one list per number of TASKs in flight, so that idle
  // executors get work first. Each executor is on at most one list: O(1) moves.
  std::vector<ReadyList> ready_;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  // Measured time per task (round trip of a TASK / its tasks), by function: deep queues
  // of cheap tasks travel in bundles, expensive or unknown ones one chunk at a time.
  std::unordered_map<std::string, Clock::duration> cost_;
  TimePoint next_sweep_ = TimePoint::max();  // when the next silent executor may expire
  std::vector<Outgoing> outbox_;
  Counters counters_;
};

}  // namespace mqpool::broker
