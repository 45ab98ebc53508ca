// The broker's event loop: owns the two ROUTER sockets and feeds BrokerCore.
#pragma once

#include <atomic>
#include <csignal>
#include <mutex>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "broker/core.hpp"
#include "broker/local_client.hpp"
#include "broker/zap.hpp"
#include "common/protocol.hpp"

namespace mqpool::broker {

// CURVE on both ROUTERs (docs/SECURITY.md): the broker's secret key (Z85) and the
// directory whose *.pub keys it admits.
struct CurveServer {
  std::string secret;
  std::string authorized_dir;
};

// What the broker's ROUTERs take from the network.
struct LoopOptions {
  std::optional<CurveServer> curve;                      // CURVE on both, or plain ZMTP
  std::int64_t max_message = proto::kDefaultMaxMessage;  // ZMQ_MAXMSGSIZE
};

class Loop {
 public:
  // Binds the client-facing and worker-facing endpoints ("tcp://host:*" allowed); an
  // empty frontend binds none (a local pool's only client is `local`). With
  // `options.curve`, both ROUTERs are CURVE servers and admit only the keys of its
  // directory, through a ZAP handler bound first. Throws zmq::error_t if an endpoint
  // cannot be bound, and std::runtime_error if the directory cannot be read.
  Loop(zmq::context_t& ctx, const std::string& frontend, const std::string& backend,
       LocalClient* local = nullptr, const LoopOptions& options = {});
  // The endpoints actually bound (with the port chosen for ":*").
  std::string frontend_endpoint() const;
  std::string backend_endpoint() const;
  // Serves until the context is shut down, the local client stops, or `stop` becomes
  // true (checked whenever poll returns, including on EINTR); on `stop` it says BYE to
  // every remote client and agent first. When `reload` becomes true (SIGHUP), the
  // authorized keys are read again and it is set back to false. `wait_mask`, when not
  // null, is the signal mask the loop sleeps with (ppoll): a caller that blocks the
  // signals that set `stop` everywhere else cannot lose one that comes between the
  // loop's look at `stop` and its sleep. Call from one thread. EINTR is retried; any
  // other failure ends the loop with its exception (after which dispatch_on_submitter()
  // serves nothing): the thread's owner decides what that means for the work in flight.
  void run(const std::atomic<bool>* stop = nullptr, std::atomic<bool>* reload = nullptr,
           const sigset_t* wait_mask = nullptr);
  // The one exception to "one socket, one owner thread" (docs/ARCHITECTURE.md): for the
  // local client's submitting thread, after it queued work. If the loop is between
  // wake-ups and nothing is in flight, dispatches that work on the caller's thread, under
  // mu_, and returns true; otherwise (busy, work under way, or the loop must look at
  // something itself) returns false and the caller wakes the loop. This spares a lone
  // call a thread hand-off (measured: docs/PERFORMANCE.md, "What each design choice
  // bought"), and leaves a burst of calls to wait together for one take.
  // Results are never delivered here: callbacks run on the loop's thread only.
  bool dispatch_on_submitter();

 private:
  void serve_until_stopped(const std::atomic<bool>* stop, std::atomic<bool>* reload,
                           const sigset_t* wait_mask, std::unique_lock<std::mutex>& lock);
  bool serve(bool local_ready);
  void drain(zmq::socket_t& s, bool from_client);
  bool take_local(bool loop_thread);
  void deliver_local(proto::Message& m);
  void flush(bool deliver_local_now);
  void send(Outgoing& o, bool deliver_local_now);
  bool any_readable();
  void watch_disconnects(zmq::context_t& ctx, zmq::socket_t& frontend);
  bool drain_disconnects();
  void say_goodbye();
  void load_keys();

  // Under CURVE: the admitted keys and the handler that ZeroMQ asks, before the ROUTERs.
  std::optional<KeyRing> keys_;
  std::optional<ZapHandler> zap_;
  std::optional<zmq::socket_t> frontend_;
  // Socket monitor of the frontend: a client whose connection closes (killed, its host
  // gone) is probed and dropped at once, not after its heartbeat expiry.
  std::optional<zmq::socket_t> monitor_;
  zmq::socket_t backend_;
  LocalClient* local_;
  // Held by whichever thread drives the sockets and core_ at the moment: the loop's own,
  // or a submitter in dispatch_on_submitter(). ZeroMQ sockets may change threads between calls
  // when a lock orders the calls, and the loop's thread polls raw descriptors without it.
  std::mutex mu_;
  BrokerCore core_;
  // After core_, whose `malformed` counter they count into.
  proto::Receiver from_clients_{"broker", "a client", &core_.mutable_counters().malformed,
                                proto::Receiver::Others::drop};
  proto::Receiver from_workers_{"broker", "a worker", &core_.mutable_counters().malformed,
                                proto::Receiver::Others::drop};
  TimePoint wake_at_ = TimePoint::max();  // when the loop's thread next wakes by itself
  bool failed_ = false;                   // run() ended with an exception
  std::vector<proto::Message> held_;      // results made by a submitter, for the loop to deliver
};

}  // namespace mqpool::broker
