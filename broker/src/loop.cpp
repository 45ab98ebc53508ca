#include "broker/loop.hpp"

#include <poll.h>

#include <cerrno>
#include <climits>
#include <system_error>

#include "common/fault.hpp"
#include "common/log.hpp"

namespace mqpool::broker {

namespace {
constexpr std::size_t kDrainBatch = 256;  // messages per socket per round, so neither side starves

// The loop whose thread this is, if any: a callback on the loop's thread that submits
// must not try to take the lock its own thread holds.
thread_local const Loop* t_loop = nullptr;

int poll_timeout(TimePoint at) {
  if (at == TimePoint::max()) return -1;
  const auto wait = std::chrono::ceil<std::chrono::milliseconds>(at - Clock::now()).count();
  return static_cast<int>(std::clamp<decltype(wait)>(wait, 0, INT_MAX));
}
}  // namespace

Loop::Loop(zmq::context_t& ctx, const std::string& frontend, const std::string& backend,
           LocalClient* local, const LoopOptions& options)
    : backend_(ctx, zmq::socket_type::router), local_(local) {
  const CurveServer* curve = options.curve ? &*options.curve : nullptr;
  if (curve != nullptr) {
    keys_.emplace(curve->authorized_dir);
    load_keys();
    zap_.emplace(ctx, *keys_);  // before any bind: without a handler ZeroMQ admits all
  }
  // The ZAP domain tells the handler which endpoint a connection came to: a key may be
  // admitted on one of them only (KeyRing).
  auto secure = [curve](zmq::socket_t& s, std::string_view domain) {
    if (curve == nullptr) return;
    s.set(zmq::sockopt::curve_server, 1);
    s.set(zmq::sockopt::curve_secretkey, curve->secret);
    s.set(zmq::sockopt::zap_domain, std::string(domain));
  };
  // Executors and agents name themselves, and come back under the same name.
  proto::configure_router(backend_, proto::Handover::yes, options.max_message);
  secure(backend_, kWorkerDomain);
  backend_.bind(backend);
  if (!frontend.empty()) {
    zmq::socket_t& front = frontend_.emplace(ctx, zmq::socket_type::router);
    proto::configure_router(front, proto::Handover::no, options.max_message);
    secure(front, kClientDomain);
    front.bind(frontend);
    watch_disconnects(ctx, front);
  }
  if (local_ != nullptr) core_.add_local_client(kLocalPeer, Clock::now());
}

void Loop::watch_disconnects(zmq::context_t& ctx, zmq::socket_t& frontend) {
  const std::string addr =
      "inproc://mqpool-broker-monitor-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
  if (zmq_socket_monitor(frontend.handle(), addr.c_str(), ZMQ_EVENT_DISCONNECTED) != 0)
    throw zmq::error_t();
  monitor_.emplace(ctx, zmq::socket_type::pair);
  monitor_->set(zmq::sockopt::linger, 0);
  monitor_->connect(addr);
}

// True if a client connection closed since the last call (its events are consumed). Not
// a proto::Receiver: the monitor's events are ZeroMQ's own frames, not MQP2 messages, and
// nothing on this inproc PAIR comes from a peer.
bool Loop::drain_disconnects() {
  bool any = false;
  zmq::message_t frame;
  while (monitor_ && monitor_->recv(frame, zmq::recv_flags::dontwait)) {
    if (!frame.more()) any = true;  // the event's last frame (its endpoint)
  }
  return any;
}

// The broker is stopping: every remote peer hears it now (clients fail their work at
// once instead of waiting out their heartbeat), and the sockets linger long enough for
// the goodbyes to leave.
void Loop::say_goodbye() {
  core_.shutdown("the broker is shutting down");
  flush(true);
  backend_.set(zmq::sockopt::linger, 1000);
  if (frontend_) frontend_->set(zmq::sockopt::linger, 1000);
}

// Reads the authorized keys (at start, and on each SIGHUP). A directory that cannot be
// read admits nobody: at start that is an error, later the broker goes on refusing.
void Loop::load_keys() {
  if (!keys_) return;  // no CURVE
  KeyRing& keys = *keys_;
  try {
    const KeyRing::Loaded loaded = keys.load();
    for (const std::string& why : loaded.skipped) detail::log().warn("broker: skipped {}", why);
    detail::log().info("broker: {} authorized keys in {}", loaded.keys, keys.dir());
    if (loaded.keys == 0)
      detail::log().warn("broker: no keys in --authorized-keys {}: nobody is admitted", keys.dir());
  } catch (const std::runtime_error& e) {
    if (!zap_) throw;
    detail::log().error("broker: {}: nobody is admitted until it can be read", e.what());
  }
}

std::string Loop::frontend_endpoint() const {
  return frontend_ ? frontend_->get(zmq::sockopt::last_endpoint) : std::string();
}
std::string Loop::backend_endpoint() const { return backend_.get(zmq::sockopt::last_endpoint); }

// The malformed-message policy is proto::Receiver's (common/protocol.hpp); the broker's
// receivers count into `malformed` and drop any other failure too (Others::drop), since
// nothing a peer sends may end the broker (std::bad_alloc included).
void Loop::drain(zmq::socket_t& s, bool from_client) {
  if (from_client)
    from_clients_.drain(
        s, true, [this](proto::Message& m) { core_.on_client(std::move(m), Clock::now()); },
        kDrainBatch);
  else
    from_workers_.drain(
        s, true, [this](proto::Message& m) { core_.on_worker(std::move(m), Clock::now()); },
        kDrainBatch);
}

// Returns false once the local client has stopped (or, off the loop's thread, when what
// it has queued must be handled on the loop's thread).
bool Loop::take_local(bool loop_thread) {
  std::vector<proto::Message> msgs;
  const bool ok = local_->take(msgs, loop_thread);
  for (proto::Message& m : msgs) {
    m.peer = kLocalPeer;
    try {
      core_.on_client(std::move(m), Clock::now());
    } catch (const std::exception& e) {
      detail::log().error("broker: failed to handle a local submission: {}", e.what());
    }
  }
  return ok;
}

void Loop::deliver_local(proto::Message& m) {
  try {
    local_->deliver(m);
  } catch (const std::exception& e) {
    detail::log().warn("client: dropped a malformed result: {}", e.what());
  }
}

// Sends what the core queued. A message that cannot be routed to a client means its
// connection is gone: the core drops the client, which may queue more (KILLs), so the
// loop goes on until the outbox stays empty.
void Loop::flush(bool deliver_local_now) {
  for (std::vector<Outgoing> out = core_.take_outbox(); !out.empty(); out = core_.take_outbox())
    for (Outgoing& o : out) send(o, deliver_local_now);
}

void Loop::send(Outgoing& o, bool deliver_local_now) {
  if (o.side == Side::client && o.msg.peer == kLocalPeer && local_ != nullptr) {
    if (deliver_local_now)
      deliver_local(o.msg);
    else
      held_.push_back(std::move(o.msg));
    return;
  }
  zmq::socket_t* s = &backend_;
  if (o.side == Side::client) {
    if (!frontend_) return;
    s = &*frontend_;
  }
  if (proto::send(*s, std::move(o.msg), true)) return;  // leaves msg.peer as it was
  detail::log().debug("broker: a {} left before its message could be sent",
                      o.side == Side::client ? "client" : "worker");
  if (o.side == Side::client) core_.client_gone(o.msg.peer);
}

// A socket's descriptor signals only new events, and any call on the socket (a send
// included) may consume that signal: ZMQ_EVENTS is the truth.
bool Loop::any_readable() {
  auto readable = [](zmq::socket_t& s) { return (s.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0; };
  return readable(backend_) || (frontend_ && readable(*frontend_)) ||
         (monitor_ && readable(*monitor_)) || (zap_ && readable(zap_->socket()));
}

// Handles everything that is ready: results held for the local client, its submissions,
// every message the sockets hold, expired deadlines; sends what comes of it. Goes on
// until no socket is readable, so that the thread may then sleep in poll.
bool Loop::serve(bool local_ready) {
  for (proto::Message& m : held_) deliver_local(m);
  held_.clear();
  if (local_ready && !take_local(true)) return false;
  do {
    if (zap_) zap_->serve();
    if (drain_disconnects()) core_.on_disconnect(Clock::now());
    drain(backend_, false);
    if (frontend_) drain(*frontend_, true);
    core_.on_tick(Clock::now());
    flush(true);
  } while (any_readable());
  return true;
}

void Loop::run(const std::atomic<bool>* stop, std::atomic<bool>* reload,
               const sigset_t* wait_mask) {
  t_loop = this;
  std::unique_lock lock(mu_);
  try {
    serve_until_stopped(stop, reload, wait_mask, lock);
  } catch (...) {
    failed_ = true;  // with mu_ held: no submitter drives the sockets after this
    t_loop = nullptr;
    throw;
  }
  if (stop != nullptr && stop->load()) {
    try {
      say_goodbye();
    } catch (const zmq::error_t&) {
      // ETERM: nobody left to tell
    }
  }
  t_loop = nullptr;
}

// The loop itself: serve, sleep in poll (without mu_, so that submitters may serve
// themselves meanwhile), serve again.
void Loop::serve_until_stopped(const std::atomic<bool>* stop, std::atomic<bool>* reload,
                               const sigset_t* wait_mask, std::unique_lock<std::mutex>& lock) {
  std::vector<pollfd> fds{{backend_.get(zmq::sockopt::fd), POLLIN, 0}};
  if (frontend_) fds.push_back({frontend_->get(zmq::sockopt::fd), POLLIN, 0});
  if (monitor_) fds.push_back({monitor_->get(zmq::sockopt::fd), POLLIN, 0});
  if (zap_) fds.push_back({zap_->socket().get(zmq::sockopt::fd), POLLIN, 0});
  const std::size_t local_fd = fds.size();
  if (local_ != nullptr) fds.push_back({local_->wake_fd(), POLLIN, 0});
  bool local_ready = false;
  while (stop == nullptr || !stop->load()) {
    if (reload != nullptr && reload->exchange(false) && keys_) load_keys();
    try {
      detail::fault_point("broker.loop");
      if (!serve(local_ready)) break;
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) break;
      if (e.num() != EINTR) throw;
    }
    wake_at_ = core_.next_deadline();
    const int timeout = poll_timeout(wake_at_);
    const timespec ts{timeout / 1000, (timeout % 1000) * 1000000L};
    lock.unlock();
    const int n = ::ppoll(fds.data(), fds.size(), timeout < 0 ? nullptr : &ts, wait_mask);
    const int err = errno;
    lock.lock();
    if (n < 0 && err != EINTR)
      throw std::system_error(err, std::generic_category(), "broker: poll");
    local_ready = local_ != nullptr && n > 0 && (fds[local_fd].revents & POLLIN) != 0;
  }
}

bool Loop::dispatch_on_submitter() {
  if (local_ == nullptr || t_loop == this) return false;
  std::unique_lock lock(mu_, std::try_to_lock);
  if (!lock || failed_) return false;  // the loop's thread is at work and will see the wake-up
  // Only a pool with nothing in flight is served here (a lone call: no hand-off). With
  // work under way the loop's thread takes submissions when it next wakes, and calls
  // that arrive meanwhile wait together, so the session can send them as one batch.
  if (core_.queued() > 0 || core_.running() > 0) return false;
  try {
    if (!take_local(false)) return false;
    flush(false);
    // The loop's thread sleeps in poll until wake_at_, on descriptors our sends may have
    // drained: it must look itself if anything is readable, a result waits for delivery,
    // or the work just dispatched brings a deadline sooner than its planned wake-up.
    return held_.empty() && !any_readable() && core_.next_deadline() >= wake_at_;
  } catch (const zmq::error_t&) {
    return false;  // ETERM: the loop's thread meets it too
  }
}

}  // namespace mqpool::broker
