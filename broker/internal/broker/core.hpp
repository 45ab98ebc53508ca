// The broker's dispatch logic as a state machine without sockets: messages and the
// current time go in, messages to send come out. The event loop (loop.cpp)
// owns the sockets; unit tests drive this class directly with an injected clock.
// docs/ARCHITECTURE.md tells how a task flows through it; docs/PROTOCOL.md §7 the rules.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <queue>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "broker/ready_lists.hpp"
#include "common/protocol.hpp"

namespace mqpool::broker {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// The longest silence the broker waits out before it takes a peer for lost, whatever
// heartbeat interval and liveness the peer declares.
inline constexpr Clock::duration kMaxSilence = std::chrono::minutes(10);
Clock::duration silence_window(std::uint32_t heartbeat_ms, std::uint32_t liveness);

enum class Side { client, worker };

struct Outgoing {
  Side side;
  proto::Message msg;  // msg.peer is the destination
};

// Tasks (not chunks) unless named otherwise; docs/STATUS.md.
struct Counters {
  std::uint64_t submitted = 0, done = 0, failed = 0, retried = 0, malformed = 0, duplicates = 0,
                refused = 0;
};

class BrokerCore {
 public:
  // `id` names this broker process in WELCOME (a client that sees it change knows the
  // broker restarted); 0 picks a random one.
  explicit BrokerCore(std::uint64_t id = 0);

  // A message from the client-facing socket. Throws SerializationError on a bad header
  // (the caller counts and drops it; state is unchanged).
  void on_client(proto::Message&& m, TimePoint now);
  // A message from the worker-facing socket (executors and agents). Throws SerializationError.
  void on_worker(proto::Message&& m, TimePoint now);
  // Expires deadlines that have passed.
  void on_tick(TimePoint now);
  // A client that needs no HELLO and never expires: a local pool's own session.
  void add_local_client(const std::string& peer, TimePoint now);
  // The client's connection is gone (a message to it could not be routed): its queued
  // chunks are dropped and the executors running its chunks are killed.
  void client_gone(const std::string& peer);
  // The client socket reported a closed connection, without saying whose: queues a
  // HEARTBEAT to every remote client now and again kReprobes later, so that the loop
  // learns from the sends which of them are gone (a send to it cannot be routed).
  // Again, because ZeroMQ reports the close before the ROUTER has let go of the
  // connection's pipe: a probe sent in between is accepted and lost (docs/PROTOCOL.md,
  // "A client's connection closes").
  void on_disconnect(TimePoint now);
  // Queues a BYE to every remote client and agent: the broker is stopping.
  void shutdown(const std::string& reason);
  // How long a task name that no connected worker knows may wait before its tasks
  // fail with UnknownTaskError (workers that know it may still be joining).
  void set_unknown_task_grace(Clock::duration d) { unknown_grace_ = d; }
  // When on_tick next has work to do; TimePoint::max() if never.
  TimePoint next_deadline() const;
  // Messages to send, in order; the outbox is left empty.
  std::vector<Outgoing> take_outbox();

  std::size_t queued() const { return queue_live_; }
  std::size_t running() const { return chunks_.size() - queue_live_; }
  std::size_t executors() const { return executors_.size(); }
  std::size_t clients() const { return clients_.size(); }
  std::size_t agents() const { return agents_.size(); }
  const Counters& counters() const { return counters_; }
  Counters& mutable_counters() { return counters_; }

 private:
  struct Client {
    std::string id;    // routing id
    std::string name;  // "host:pid", from HELLO
    TimePoint since{}, last_seen{};
    Clock::duration expiry{};  // silence longer than this: gone; zero: never (local)
    // Its queued chunk ids, oldest first; entries of chunks that finished, were cancelled
    // or split while queued are skipped. `live` counts the others.
    std::deque<std::uint64_t> queue;
    std::size_t live = 0;
    // Estimated work dispatched for it: the client with queued work and the least of it
    // goes next (fair queueing weighted by work, not by message).
    Clock::duration served{};
    bool active = false;  // on active_
  };
  struct Agent {
    std::string id;  // routing id
    std::string host;
    std::uint32_t pid = 0;
    std::uint32_t executors = 0;
    std::unordered_set<std::string> tasks;
    TimePoint since{}, last_seen{};
    Clock::duration expiry{};
    std::uint64_t tasks_done = 0;
    bool leaving = false;  // draining (SIGTERM): its executors get no new work
  };
  struct Chunk {
    Client* client;  // clients_ nodes never move; a client's chunks go before it does
    proto::ChunkSpec spec;
    zmq::message_t args;
    std::uint32_t losses = 0;  // deaths of an executor that ran nothing but this chunk
    bool suspect = false;      // was on an executor that died: now travels alone
    std::string executor;      // empty while queued
    // The executors it was taken back from (lost, or gone on purpose): their late DONE
    // still counts. A DONE from any other executor is refused (on_done).
    std::vector<std::string> earlier;
  };
  // On ready_ (its ReadyLink) while it has credit left and may get work. unordered_map
  // nodes never move, so the links stay valid until the executor is erased.
  struct Executor : ReadyLink {
    std::uint64_t agent = 0;
    std::uint32_t pid = 0;
    std::string name;  // "host:pid"
    std::uint32_t capacity = 1;
    std::uint32_t max_bundle = 0;
    std::uint32_t inflight = 0;  // TASK messages without a DONE
    const std::string* id = nullptr;
    bool doomed = false;     // being killed: no more work
    bool exclusive = false;  // runs a timed or suspect chunk: nothing else meanwhile
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
  using ChunkIt = std::unordered_map<std::uint64_t, Chunk>::iterator;
  struct Bundle;  // one TASK being filled (core.cpp)
  struct Deadline {
    TimePoint at;
    std::uint64_t chunk;
    std::string executor;
    bool operator>(const Deadline& o) const { return at > o.at; }
  };

  void on_hello(const std::string& peer, const proto::Hello& h, TimePoint now);
  void on_agent_hello(const std::string& peer, const proto::AgentHello& h, TimePoint now);
  void on_heartbeat(Side side, const std::string& peer, TimePoint now);
  void refuse(Side side, const std::string& peer);
  void status(const std::string& peer, TimePoint now);
  Client* known_client(const std::string& peer, TimePoint now);
  void drop_client(const std::string& peer);
  void submit(Client& client, proto::ChunkSpec spec, zmq::message_t args, TimePoint now);
  void on_leaving(const std::string& peer);
  void enqueue(std::uint64_t id, Client& c, bool front);
  void dequeue_head(Client& c);
  Client* next_client(const Executor& e);
  Chunk* head(Client& c, ChunkIt* it = nullptr);
  // fill and its policies, in the order it applies them.
  bool fill(Executor& e, Client& c, TimePoint now);
  std::size_t bundle_limit(const Executor& e) const;
  static bool travels_alone(const Chunk& ch);
  const Clock::duration* known_cost(const std::string& fn) const;
  bool bundle_admits(const Executor& e, const Bundle& b, const Chunk& ch,
                     const Clock::duration* cost) const;
  bool coalesced_piece(const Executor& e, ChunkIt it, const Clock::duration* cost);
  bool halve_tail(ChunkIt it, const Clock::duration* cost);
  void assign(Executor& e, Bundle& b, ChunkIt it, const Clock::duration* cost);
  void run_alone(Executor& e, ChunkIt it, TimePoint now);
  void send_task(Executor& e, Client& c, Bundle& b, TimePoint now);
  void charge(Client& c, const Bundle& b);
  bool knows(const Executor& e, const std::string& fn) const;
  bool anyone_knows(const std::string& fn) const;
  void fail_unknown_tasks(TimePoint now);
  void count_done(std::uint64_t tasks, TimePoint now);
  void on_ready(const std::string& peer, const proto::Ready& r, TimePoint now);
  void on_done(const std::string& peer, proto::Message& m, TimePoint now);
  void on_exited(const std::string& agent_peer, const proto::Exited& e);
  void cancel_client(const std::string& client);
  void dispatch(TimePoint now);
  void offer(Executor& e);
  Executor* pop_ready();
  void requeue(std::uint64_t id, bool penalise, bool split, bool lost, const std::string& reason);
  void split_to_front(ChunkIt it, const std::vector<std::uint32_t>& counts);
  bool split_head(ChunkIt it, const std::vector<std::uint32_t>& counts);
  void fail(std::uint64_t id, const WireError& e);
  void deliver(const std::string& client, const std::vector<proto::ResultSpec>& specs,
               std::vector<zmq::message_t> frames);
  void kill_executor(const std::string& id);
  void send_kill(std::uint64_t agent, std::uint32_t pid);
  void expire_silent(TimePoint now);
  // Queues a HEARTBEAT to every remote client (see on_disconnect).
  void probe_clients();
  void reprobe(TimePoint now);
  TimePoint next_probe() const;
  void seen(const std::string& id, TimePoint now);
  void drop_executor(const std::string& id, bool its_fault, const std::string& reason);
  std::size_t share() const;
  void learn_cost(Executor& e, TimePoint now);
  bool prefetchable(const Executor& e) const;

  std::uint64_t id_;
  TimePoint started_{};  // when the first message came
  std::uint64_t next_chunk_ = 1;
  std::unordered_map<std::uint64_t, Chunk> chunks_;
  std::size_t queue_live_ = 0;                       // chunks queued, over all clients
  std::unordered_map<std::string, Client> clients_;  // by routing id
  std::vector<Client*> active_;  // clients that may have queued chunks, in arrival order
  Clock::duration vtime_{};      // `served` of the last TASK's client before that TASK
  std::unordered_map<std::string, Executor> executors_;
  std::unordered_map<std::uint64_t, Agent> agents_;  // by agent id
  // Task names that no connected worker knows, since when (fail after unknown_grace_).
  std::unordered_map<std::string, TimePoint> unknown_since_;
  Clock::duration unknown_grace_ = std::chrono::seconds(3);
  TimePoint next_unknown_check_ = TimePoint::max();
  std::string last_known_fn_;  // saves the lookup for a run of chunks of one function
  // Tasks done per second over the last ten seconds, for status's tasks/s.
  struct Second {
    std::int64_t at = -1;
    std::uint64_t tasks = 0;
  };
  Second rate_[10];
  // Executors with credit left, one list per number of TASKs in flight, so that idle
  // executors get work first. Each executor is on at most one list: O(1) moves.
  ReadyLists ready_;
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  // Measured time per task (round trip of a TASK / its tasks), by function: deep queues
  // of cheap tasks travel in bundles, expensive or unknown ones one chunk at a time.
  std::unordered_map<std::string, Clock::duration> cost_;
  // Executors (pids) to kill, by agent, for agents that have not said hello yet.
  std::unordered_map<std::uint64_t, std::unordered_set<std::uint32_t>> owed_kills_;
  TimePoint disconnected_at_{};              // the last disconnect the socket reported
  std::size_t probes_done_ = SIZE_MAX;       // of its later probes (kReprobes); none: all done
  TimePoint next_sweep_ = TimePoint::max();  // when the next silent peer may expire
  std::vector<Outgoing> outbox_;
  Counters counters_;
};

}  // namespace mqpool::broker
