// `mqpool broker`: a standalone broker process (mqpool::run_broker).
#include <csignal>
#include <cstdio>

#include "broker_loop.hpp"
#include "log.hpp"
#include "mqpool/broker.hpp"

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
    // One line on stdout, flushed: users see where to point clients and workers, and
    // scripts that bound ":*" read the ports back from it.
    std::printf("mqpool broker: clients on %s, workers on %s\n", loop.frontend_endpoint().c_str(),
                loop.backend_endpoint().c_str());
    std::fflush(stdout);
    loop.run(&g_stop);
  } catch (const zmq::error_t& e) {
    detail::log().error("broker: {}", e.what());
    return 1;
  }
  return 0;
}

}  // namespace mqpool
