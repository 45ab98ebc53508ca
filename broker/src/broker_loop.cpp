#include "broker_loop.hpp"

#include <csignal>

#include "log.hpp"
#include "mqpool/broker.hpp"

namespace mqpool::broker {

namespace {
constexpr int kDrainBatch = 256;  // messages per socket per wake-up, so neither side starves

void configure(zmq::socket_t& s) {
  s.set(zmq::sockopt::router_mandatory, 1);  // an unroutable reply is an error we see
  s.set(zmq::sockopt::router_handover, 1);   // a reconnecting peer takes over its id
  s.set(zmq::sockopt::sndhwm, 0);            // credits bound the worker side; never drop
  s.set(zmq::sockopt::rcvhwm, 0);
  s.set(zmq::sockopt::maxmsgsize, proto::kMaxMessageSize);
  s.set(zmq::sockopt::linger, 0);
}
}  // namespace

Loop::Loop(zmq::context_t& ctx, const std::string& frontend, const std::string& backend,
           LocalClient* local)
    : backend_(ctx, zmq::socket_type::router), local_(local) {
  configure(backend_);
  backend_.bind(backend);
  if (!frontend.empty()) {
    frontend_.emplace(ctx, zmq::socket_type::router);
    configure(*frontend_);
    frontend_->bind(frontend);
  }
}

std::string Loop::frontend_endpoint() const {
  return frontend_ ? frontend_->get(zmq::sockopt::last_endpoint) : std::string();
}
std::string Loop::backend_endpoint() const { return backend_.get(zmq::sockopt::last_endpoint); }

void Loop::drain(zmq::socket_t& s, bool from_client) {
  for (int i = 0; i < kDrainBatch; ++i) {
    std::optional<proto::Message> m;
    try {
      m = proto::recv(s, true, zmq::recv_flags::dontwait);
      if (!m) return;
      if (from_client)
        core_.on_client(std::move(*m), Clock::now());
      else
        core_.on_worker(std::move(*m), Clock::now());
    } catch (const SerializationError& e) {
      ++core_.mutable_counters().malformed;
      detail::log().warn("broker: dropped a malformed message from a {}: {}",
                         from_client ? "client" : "worker", e.what());
    } catch (const std::exception& e) {
      // Nothing a peer sends may end the broker (std::bad_alloc included).
      ++core_.mutable_counters().malformed;
      detail::log().error("broker: failed to handle a message from a {}: {}",
                          from_client ? "client" : "worker", e.what());
    }
  }
}

// Returns false once the local client has stopped.
bool Loop::drain_local() {
  std::vector<proto::Message> msgs;
  const bool alive = local_->take(msgs);
  for (proto::Message& m : msgs) {
    m.peer = kLocalPeer;
    try {
      core_.on_client(std::move(m), Clock::now());
    } catch (const std::exception& e) {
      detail::log().error("broker: failed to handle a local submission: {}", e.what());
    }
  }
  return alive;
}

void Loop::flush() {
  for (Outgoing& o : core_.take_outbox()) {
    if (o.side == Side::client && o.msg.peer == kLocalPeer && local_ != nullptr) {
      try {
        local_->deliver(o.msg);
      } catch (const std::exception& e) {
        detail::log().warn("client: dropped a malformed result: {}", e.what());
      }
      continue;
    }
    if (o.side == Side::client && !frontend_) continue;
    zmq::socket_t& s = o.side == Side::client ? *frontend_ : backend_;
    if (!proto::send(s, std::move(o.msg), true))
      detail::log().debug("broker: a {} left before its message could be sent",
                          o.side == Side::client ? "client" : "worker");
  }
}

void Loop::run(const std::atomic<bool>* stop) {
  std::vector<zmq::pollitem_t> items{{backend_.handle(), 0, ZMQ_POLLIN, 0}};
  if (frontend_) items.push_back({frontend_->handle(), 0, ZMQ_POLLIN, 0});
  const std::size_t local_item = items.size();
  if (local_ != nullptr) items.push_back({nullptr, local_->wake_fd(), ZMQ_POLLIN, 0});
  while (stop == nullptr || !stop->load()) {
    long timeout = -1;
    if (const TimePoint next = core_.next_deadline(); next != TimePoint::max()) {
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now());
      timeout = std::max<long>(0, wait.count());
    }
    try {
      zmq::poll(items.data(), items.size(), std::chrono::milliseconds(timeout));
      if (items[0].revents & ZMQ_POLLIN) drain(backend_, false);
      if (frontend_ && (items[1].revents & ZMQ_POLLIN)) drain(*frontend_, true);
      if (local_ != nullptr && (items[local_item].revents & ZMQ_POLLIN) && !drain_local()) return;
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      if (e.num() != EINTR) throw;
    }
    core_.on_tick(Clock::now());
    flush();
  }
}

}  // namespace mqpool::broker

namespace mqpool {

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop = true; }
}  // namespace

int run_broker(const BrokerOptions& options) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;  // no SA_RESTART: poll returns EINTR and the loop checks
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  zmq::context_t ctx;
  try {
    broker::Loop loop(ctx, options.frontend, options.backend);
    detail::log().info("broker: clients on {}, workers on {}", loop.frontend_endpoint(),
                       loop.backend_endpoint());
    loop.run(&g_stop);
  } catch (const zmq::error_t& e) {
    detail::log().error("broker: {}", e.what());
    return 1;
  }
  return 0;
}

}  // namespace mqpool
