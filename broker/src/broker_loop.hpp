// The broker's event loop: owns the two ROUTER sockets and feeds BrokerCore.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "broker_core.hpp"
#include "local_client.hpp"

namespace mqpool::broker {

class Loop {
 public:
  // Binds the client-facing and worker-facing endpoints ("tcp://host:*" allowed); an
  // empty frontend binds none (a local pool's only client is `local`). Throws
  // zmq::error_t if an endpoint cannot be bound.
  Loop(zmq::context_t& ctx, const std::string& frontend, const std::string& backend,
       LocalClient* local = nullptr);
  // The endpoints actually bound (with the port chosen for ":*").
  std::string frontend_endpoint() const;
  std::string backend_endpoint() const;
  // Serves until the context is shut down, or `stop` becomes true (checked whenever
  // poll returns, including on EINTR). Call from the thread that owns the loop.
  void run(const std::atomic<bool>* stop = nullptr);

 private:
  void drain(zmq::socket_t& s, bool from_client);
  bool drain_local();
  void flush();

  std::optional<zmq::socket_t> frontend_;
  zmq::socket_t backend_;
  LocalClient* local_;
  BrokerCore core_;
};

}  // namespace mqpool::broker
