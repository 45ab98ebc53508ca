// Wire protocol v2 (docs/PROTOCOL.md): every message is
//   [routing id (ROUTER side only)] ["MQP2"] [command: 1 byte] [header: msgpack] [payload...]
// Payload frames (task arguments, outcomes) are forwarded by the broker untouched.
// Messages that carry chunks carry a list of them, so one message can batch many.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "mqpool/codec.hpp"
#include "mqpool/errors.hpp"
#include "mqpool/status.hpp"

namespace mqpool::proto {

inline constexpr std::string_view kTag = "MQP2";
// The default ZMQ_MAXMSGSIZE of every socket (`--max-message`, PoolOptions::max_message):
// a frame that declares more is refused by ZeroMQ before any memory is taken for it, and
// its connection closed. Room for the 64 MiB arguments users send, a few to a chunk.
inline constexpr std::int64_t kDefaultMaxMessage = std::int64_t{256} << 20;

enum class Cmd : std::uint8_t {
  // client <-> broker (frontend)
  submit = 0x01,   // C->B header: [ChunkSpec...]        frames: one args frame per chunk
  result = 0x02,   // B->C header: [ResultSpec...]       frames: errors, values per chunk
  cancel = 0x03,   // C->B header: []  drop every queued and running chunk of this client
  hello = 0x04,    // C->B header: Hello           a cluster client (re)joins; B answers WELCOME
  welcome = 0x05,  // B->C header: Welcome
  bye = 0x06,      // C->B: leaving, drop my work; B->C/A: the broker is stopping. header: Bye
  reset = 0x07,    // B->peer header: []  "I do not know you": HELLO (client: and resubmit) again
  status = 0x08,   // C->B header: []; B->C header: StatusReport
  refused =
      0x09,  // B->peer header: Bye           the peer is on the wrong endpoint, or not admitted
  // broker <-> worker (backend)
  ready = 0x10,        // E->B header: Ready                executor joins with credit
  task = 0x11,         // B->E header: [TaskSpec...]        frames: one args frame per chunk
  done = 0x12,         // E->B header: [chunk ids]          frames: errors, values per chunk
  agent_hello = 0x13,  // A->B header: AgentHello
  exited = 0x14,       // A->B header: Exited               an executor process ended
  kill = 0x15,         // B->A header: Kill                 kill one executor
  heartbeat = 0x16,    // E/A/C->B, echoed back to the sender; header: []
  leaving = 0x17,      // A->B header: []  the agent drains: no new work for its executors
};

// An executor's heartbeat socket uses its routing id plus this suffix.
inline constexpr char kHeartbeatSuffix = 'h';

// One chunk as the client submits it: tasks seq .. seq+count-1 of the client's job `job`.
// Both numbers are 64 bits wide and never reused, so no run of any length wraps them
// (docs/PROTOCOL.md, "Ids"); the broker splits a chunk by adding to `seq`.
struct ChunkSpec {
  std::uint64_t job = 0;
  std::uint64_t seq = 0;
  std::uint32_t count = 0;
  std::string fn;
  std::uint32_t timeout_ms = 0;  // per-chunk time limit; 0 = none
  std::uint32_t max_retries = 0;
  // Single tasks batched by the client session (calls of any number of jobs, or one
  // job's tasks of chunksize 1): the broker hands them out in pieces sized to their
  // measured cost, and a crash of one is charged to none of its neighbours.
  bool coalesced = false;
  MSGPACK_DEFINE(job, seq, count, fn, timeout_ms, max_retries, coalesced)
};

// One chunk's outcomes as the broker returns them to the client.
struct ResultSpec {
  std::uint64_t job = 0;
  std::uint64_t seq = 0;
  std::uint32_t count = 0;
  MSGPACK_DEFINE(job, seq, count)
};

// One chunk as the broker hands it to an executor.
struct TaskSpec {
  std::uint64_t chunk = 0;  // broker-assigned id, echoed in DONE
  std::uint32_t count = 0;
  std::string fn;
  MSGPACK_DEFINE(chunk, count, fn)
};

struct Ready {
  std::uint64_t agent = 0;  // the agent that forked this executor
  std::uint32_t pid = 0;
  std::string host;
  std::uint32_t credit = 1;           // TASK messages it accepts before the first DONE
  std::uint32_t max_bundle = 0;       // chunks per TASK message it accepts; 0 = any
  std::uint32_t heartbeat_ms = 1000;  // it sends a HEARTBEAT this often, busy or not
  std::uint32_t liveness = 3;         // heartbeats missed before the broker declares it lost
  MSGPACK_DEFINE(agent, pid, host, credit, max_bundle, heartbeat_ms, liveness)
};

struct AgentHello {
  std::uint64_t agent = 0;
  std::uint32_t pid = 0;
  std::string host;
  std::vector<std::string> tasks;     // the task names its executors run
  std::uint32_t executors = 0;        // executor processes it keeps alive
  std::uint32_t heartbeat_ms = 1000;  // it sends a HEARTBEAT this often
  std::uint32_t liveness = 3;
  MSGPACK_DEFINE(agent, pid, host, tasks, executors, heartbeat_ms, liveness)
};

// A cluster client's greeting, sent on connect and again whenever the broker has
// forgotten it (RESET, or silence longer than its liveness window).
struct Hello {
  std::uint64_t session = 0;  // random per Pool: names the client in logs and status
  std::string name;           // "host:pid"
  std::uint32_t heartbeat_ms = 1000;
  std::uint32_t liveness = 3;
  MSGPACK_DEFINE(session, name, heartbeat_ms, liveness)
};

struct Welcome {
  std::uint64_t broker = 0;     // random per broker process: a new value means a restart
  std::uint32_t executors = 0;  // executors connected now: a client sizes map chunks by it
  MSGPACK_DEFINE(broker, executors)
};

struct Bye {
  std::string reason;
  MSGPACK_DEFINE(reason)
};

// STATUS's reply header: the public mqpool::BrokerStatus (mqpool/status.hpp).
using StatusReport = BrokerStatus;

struct Exited {
  std::uint32_t pid = 0;
  std::string reason;    // "killed by signal 9 (SIGKILL)", "exited with code 3"
  bool planned = false;  // left on purpose (maxtasksperchild): its chunks are not its fault
  MSGPACK_DEFINE(pid, reason, planned)
};

struct Kill {
  std::uint32_t pid = 0;
  MSGPACK_DEFINE(pid)
};

// The routing id an executor uses: its agent's id and its pid, so that the agent's
// EXITED report names the same peer.
std::string executor_id(std::uint64_t agent, std::uint32_t pid);
std::string agent_id(std::uint64_t agent);

// A message without its envelope. `peer` is the routing id on a ROUTER socket (source
// when received, destination when sent) and empty on a DEALER.
struct Message {
  std::string peer;
  Cmd cmd{};
  zmq::message_t header;
  std::vector<zmq::message_t> frames;
};

// Moves a buffer's bytes into a frame without copying (small ones are copied into
// ZeroMQ's inline storage).
zmq::message_t to_frame(detail::Buffer&& buf);

// Encodes `header` with msgpack into a frame.
template <class H>
zmq::message_t encode(const H& header) {
  detail::Buffer buf(64);  // headers are mostly small; larger ones grow by doubling
  detail::Packer pk(buf);
  pk.pack(header);
  return to_frame(std::move(buf));
}

// The headers of every task's path (SUBMIT, TASK, DONE, RESULT), read field by field
// without msgpack's generic parser. False if the bytes are not exactly the usual
// encoding (or are malformed): decode() then takes the generic path, which accepts
// every valid encoding and reports the errors.
bool decode_fast(const zmq::message_t& header, std::vector<ChunkSpec>& out);
bool decode_fast(const zmq::message_t& header, std::vector<TaskSpec>& out);
bool decode_fast(const zmq::message_t& header, std::vector<ResultSpec>& out);
bool decode_fast(const zmq::message_t& header, std::vector<std::uint64_t>& out);

// Decodes the header of `m` as H. Throws SerializationError.
template <class H>
H decode(const Message& m) {
  if constexpr (requires(H& h) { decode_fast(m.header, h); }) {
    H h;
    if (decode_fast(m.header, h)) return h;
  }
  return detail::convert<H>(detail::unpack_exact_reused(m.header.data(), m.header.size()));
}

template <class H>
Message make(Cmd cmd, const H& header, std::string peer = {}) {
  return Message{std::move(peer), cmd, encode(header), {}};
}

// An outcome errors frame: empty when nothing failed, else a msgpack array of
// [index, code, type, message, task, worker].
zmq::message_t encode_errors(const std::vector<std::pair<std::uint32_t, WireError>>& errors);
std::vector<std::pair<std::uint32_t, WireError>> decode_errors(const zmq::message_t& frame);
// The number of rows an errors frame declares (its array header), without decoding
// them; 0 for an empty or unreadable frame.
std::uint32_t error_count(const zmq::message_t& frame);
// Errors and values frames for a chunk whose every task failed with `e`.
void fail_frames(std::uint32_t count, const WireError& e, std::vector<zmq::message_t>& out);

// Sends `m` (with its peer frame first if `routed`). Returns false if the peer is
// unreachable (ROUTER_MANDATORY), or if `wait` is false and the socket has no room for
// it: a DEALER whose only connection failed its handshake (a refused CURVE key) has no
// pipe at all, and a send that waited for one would wait for ever.
bool send(zmq::socket_t& s, Message&& m, bool routed, bool wait = true);
// Receives one message. Empty when nothing is waiting (with dontwait). Throws
// SerializationError for a malformed envelope, after consuming all of its frames.
// A receive loop goes through Receiver (below), or applies its policy with drop().
std::optional<Message> recv(zmq::socket_t& s, bool routed, zmq::recv_flags flags);

// The one policy for a malformed message, in every receive loop (docs/PROTOCOL.md §8):
//
// A message is malformed when its envelope does not check out (§2: recv() would throw
// SerializationError) or when its handler throws SerializationError (a header or a
// count of frames that does not decode). It is dropped whole, and the loop goes on with
// the next message: nothing malformed ends a loop. It is counted in the receiver's
// counter, if it was given one (the broker's `malformed`, docs/STATUS.md), and logged at
// warn level with its sender (the routing id, in hex, on a ROUTER) and the reason:
//   "<who>: dropped a malformed message from <from> (id 45...): <reason>"
// at most kLogBurst lines per kLogWindow for each receiver, so that a peer that floods
// bad messages cannot flood the log; the first line after such a silence says how many
// were left out.
//
// zmq::error_t (ETERM, EINTR) always propagates: the loop's owner decides. So does any
// other exception (the thread failure policy, docs/ARCHITECTURE.md, "Failures"), unless
// the receiver is made with Others::drop (the broker: nothing a peer sends may end it):
// then the message is counted and logged the same way, at error level, as "<who>:
// failed to handle a message from <from> (id ...): <what>".
class Receiver {
 public:
  enum class Others { propagate, drop };
  static constexpr std::size_t kLogBurst = 10;
  static constexpr std::chrono::seconds kLogWindow{10};
  static constexpr std::size_t kNoLimit = SIZE_MAX;

  // `who` begins its log lines ("broker"), `from` names the sender ("a worker", "the
  // broker"); `counter`, when not null, counts every message it drops.
  Receiver(std::string who, std::string from, std::uint64_t* counter = nullptr,
           Others others = Others::propagate);

  // Receives without blocking, and hands each message to on_message(Message&), until
  // the socket holds no more or `limit` messages (malformed ones included) were taken.
  template <class Handler>
  void drain(zmq::socket_t& s, bool routed, Handler&& on_message, std::size_t limit = kNoLimit);

  // The policy, for a loop that receives by itself (recv() threw SerializationError):
  // counts the message and logs it as above. `peer` is empty on a DEALER.
  void drop(std::string_view peer, std::string_view reason);

 private:
  enum class Got { nothing, message, dropped };
  // recv() with dontwait into `m`; a malformed message (or, with Others::drop, any
  // failure but zmq::error_t) is dropped here.
  Got take(zmq::socket_t& s, bool routed, Message& m);
  void fail(std::string_view peer, std::string_view what);
  void note(bool error, std::string_view what, std::string_view peer, std::string_view reason);

  std::string who_, from_;
  std::uint64_t* counter_;
  Others others_;
  std::chrono::steady_clock::time_point window_{};  // when the current log window began
  std::size_t lines_ = 0;                           // lines logged in it
  std::uint64_t unlogged_ = 0;                      // drops not logged since the last line
};

template <class Handler>
void Receiver::drain(zmq::socket_t& s, bool routed, Handler&& on_message, std::size_t limit) {
  for (std::size_t i = 0; i < limit; ++i) {
    Message m;
    const Got got = take(s, routed, m);
    if (got == Got::nothing) return;
    if (got == Got::dropped) continue;
    const std::string peer = m.peer;  // the handler may move it; ids fit the inline buffer
    try {
      on_message(m);
    } catch (const SerializationError& e) {
      drop(peer, e.what());
    } catch (const zmq::error_t&) {
      throw;
    } catch (const std::exception& e) {
      if (others_ == Others::propagate) throw;
      fail(peer, e.what());
    }
  }
}

// Every socket of the protocol is set up by one of these (docs/PROTOCOL.md §1), so that
// the options both ends must agree on are written once.
// Every socket refuses frames larger than `max_message` (ZMQ_MAXMSGSIZE).
//   Traffic::work: carries tasks and outcomes: no high-water mark either way (credits
//     bound the worker side; nothing is ever dropped).
//   Traffic::control: hellos, heartbeats, kills: ZeroMQ's default high-water marks.
enum class Traffic { work, control };
// Whether a peer that connects with the routing id of a connected one takes it over
// (ZMQ_ROUTER_HANDOVER). Workers name themselves and need it to come back; clients get
// ids from the ROUTER, and without it no peer can take over a client's id, and with it
// that client's results.
enum class Handover { no, yes };
// One of the broker's ROUTERs: work traffic, ROUTER_MANDATORY (an unroutable reply is an
// error the broker sees), `handover`, linger 0.
void configure_router(zmq::socket_t& s, Handover handover, std::int64_t max_message);
// A DEALER that connects to the broker: `traffic`; a lost broker looked for again at
// growing intervals, up to 5 s; `routing_id` unless empty (the ROUTER then assigns one);
// linger `linger_ms` unless nullopt (ZeroMQ's default: wait until everything is sent).
void configure_dealer(zmq::socket_t& s, Traffic traffic, const std::string& routing_id,
                      std::optional<int> linger_ms, std::int64_t max_message);

}  // namespace mqpool::proto
