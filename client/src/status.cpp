// mqpool::broker_status(): one STATUS question on a socket of its own.
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/curve.hpp"
#include "common/protocol.hpp"
#include "mqpool/cluster.hpp"
#include "mqpool/errors.hpp"

namespace mqpool {

namespace {

// A status reply holds a few hundred bytes per worker and client; anything far larger
// is not a broker's answer, and must not make this process allocate it.
constexpr std::int64_t kMaxReplySize = std::int64_t{64} << 20;

ConnectionError no_answer(const std::string& endpoint, std::chrono::milliseconds timeout) {
  return ConnectionError("no broker answered at " + endpoint + " within " +
                         std::to_string(timeout.count()) + " ms");
}

// What a REFUSED answer says: the peer's reason (e.g. "this is the worker endpoint").
std::string refusal(const std::string& endpoint, const proto::Message& m) {
  std::string reason;
  try {
    reason = proto::decode<proto::Bye>(m).reason;
  } catch (const SerializationError&) {
    reason = "no readable reason given";
  }
  return "the broker at " + endpoint + " refused the status request: " + reason;
}

}  // namespace

BrokerStatus broker_status(const std::string& endpoint, std::chrono::milliseconds timeout,
                           const std::string& curve_secret_file,
                           const std::string& broker_key_file) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  const auto curve = detail::load_curve_client(curve_secret_file, broker_key_file, "--curve-secret",
                                               "--broker-key");
  // A context of its own: callable from any thread and any program, pool or not.
  zmq::context_t ctx(1);
  zmq::socket_t sock(ctx, zmq::socket_type::dealer);
  sock.set(zmq::sockopt::linger, 0);
  sock.set(zmq::sockopt::maxmsgsize, kMaxReplySize);
  if (curve) detail::apply_curve(sock, *curve);
  detail::HandshakeWatch watch(ctx, sock, curve.has_value());
  try {
    sock.connect(endpoint);
  } catch (const zmq::error_t& e) {
    throw ConnectionError("cannot connect to broker " + endpoint + ": " + e.what());
  }
  // Queued on the socket until the connection is up (ZMQ_IMMEDIATE is off).
  proto::send(sock, proto::make(proto::Cmd::status, std::vector<int>{}), false);
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) throw no_answer(endpoint, timeout);
    zmq::pollitem_t items[] = {{sock.handle(), 0, ZMQ_POLLIN, 0},
                               {watch.socket().handle(), 0, ZMQ_POLLIN, 0}};
    try {
      if (zmq::poll(items, 2, left) == 0) continue;
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal for someone else: keep waiting
      throw ConnectionError("status from " + endpoint + ": " + e.what());
    }
    if (const std::string why = watch.refusal(); !why.empty()) {
      std::string what = "broker " + endpoint;
      throw ConnectionError(what.append(": ").append(why));
    }
    std::optional<proto::Message> m;
    try {
      m = proto::recv(sock, false, zmq::recv_flags::dontwait);
    } catch (const SerializationError&) {
      continue;  // not a broker's message: wait for one that is, until the deadline
    }
    if (!m) continue;
    if (m->cmd == proto::Cmd::refused) throw ConnectionError(refusal(endpoint, *m));
    // Other commands (a heartbeat, a RESET for a client it does not know) are not the answer.
    if (m->cmd == proto::Cmd::status) {
      try {
        return proto::decode<proto::StatusReport>(*m);
      } catch (const SerializationError& e) {
        throw ConnectionError("broker at " + endpoint + " sent an unreadable status: " + e.what());
      }
    }
  }
}

}  // namespace mqpool
