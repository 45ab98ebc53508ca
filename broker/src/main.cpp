// `mqpool broker`: a standalone broker process (mqpool::run_broker).
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <utility>

#include "broker/loop.hpp"
#include "common/curve.hpp"
#include "common/endpoint.hpp"
#include "common/log.hpp"
#include "common/size.hpp"
#include "mqpool/broker.hpp"

namespace mqpool {

namespace {
std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
// Not extern "C": a C name is exported by libmqpool, and a program's own function of
// that name would take its place (package.exports checks that there is none).
void on_stop_signal(int) { g_stop = true; }
void on_reload_signal(int) { g_reload = true; }

// Blocks signals for the calling thread and the threads it starts; restores the mask.
class SignalsBlocked {
 public:
  SignalsBlocked(std::initializer_list<int> signals) {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : signals) sigaddset(&set, sig);
    pthread_sigmask(SIG_BLOCK, &set, &before_);
  }
  ~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &before_, nullptr); }
  SignalsBlocked(const SignalsBlocked&) = delete;
  SignalsBlocked& operator=(const SignalsBlocked&) = delete;
  // The mask as it was: what the loop sleeps with.
  const sigset_t& before() const { return before_; }

 private:
  sigset_t before_{};
};

void fail(const std::string& what) { std::fprintf(stderr, "mqpool broker: %s\n", what.c_str()); }

// Refuses what bind would get wrong or report vaguely. Throws std::invalid_argument.
void check_options(const BrokerOptions& o) {
  detail::check_endpoint("--frontend", o.frontend, detail::EndpointUse::bind);
  detail::check_endpoint("--backend", o.backend, detail::EndpointUse::bind);
  // Each would bind alone, so the probe in bind_failure() could not tell which failed.
  if (o.frontend == o.backend && !o.frontend.ends_with(":*"))
    throw std::invalid_argument("--frontend and --backend are both " + o.frontend +
                                ": clients and workers need endpoints of their own");
  detail::configure_log_level(o.log_level);
  if (o.curve_secret_file.empty() != o.authorized_keys_dir.empty())
    throw std::invalid_argument(
        o.curve_secret_file.empty()
            ? "--authorized-keys needs --curve-secret too: the broker's own secret key"
            : "--curve-secret needs --authorized-keys too: CURVE without a list of admitted "
              "keys would admit every key");
  if (o.insecure && !o.curve_secret_file.empty())
    throw std::invalid_argument("--insecure and --curve-secret contradict each other");
  detail::check_max_message("--max-message", o.max_message);
}

// The loop's options; CURVE's keys are read before anything binds. Throws
// std::invalid_argument.
broker::LoopOptions loop_options(const BrokerOptions& o) {
  broker::LoopOptions lo;
  lo.max_message = o.max_message;
  if (o.curve_secret_file.empty()) return lo;
  if (!std::filesystem::is_directory(o.authorized_keys_dir))
    throw std::invalid_argument("--authorized-keys " + o.authorized_keys_dir + ": not a directory");
  lo.curve = broker::CurveServer{detail::read_key(o.curve_secret_file, "--curve-secret"),
                                 o.authorized_keys_dir};
  return lo;
}

// Anyone who reaches an endpoint without CURVE may run commands on the workers
// (mqpool.exec): say so once, unless the user chose it (--insecure).
void warn_if_open(const BrokerOptions& o) {
  if (!o.curve_secret_file.empty() || o.insecure) return;
  for (const std::string* ep : {&o.frontend, &o.backend}) {
    if (detail::is_loopback(*ep)) continue;
    detail::log().warn(
        "broker: {} is reachable beyond this host and CURVE is off: anyone who can connect "
        "can run commands on the workers. Use --curve-secret and --authorized-keys "
        "(docs/SECURITY.md), or --insecure to say this is meant",
        *ep);
  }
}

// The reason `endpoint` cannot be bound, or "" if it can. Binds it on a context of its
// own, which is gone (and the port free again) when this returns.
std::string bind_problem(const std::string& endpoint) {
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::router);
  s.set(zmq::sockopt::linger, 0);
  try {
    s.bind(endpoint);
  } catch (const zmq::error_t& e) {
    return e.what();
  }
  return {};
}

// The line that says which endpoint could not be bound and why. The loop binds both and
// its error names neither, so after it failed (and its context is gone) each endpoint
// is bound alone, in the loop's order, to find the one that fails.
std::string bind_failure(const BrokerOptions& o, const zmq::error_t& e) {
  for (const auto& [option, endpoint] :
       {std::pair{"--backend", &o.backend}, std::pair{"--frontend", &o.frontend}}) {
    if (const std::string why = bind_problem(*endpoint); !why.empty())
      return std::string(option) + " " + *endpoint + ": " + why;
  }
  return "cannot bind --frontend " + o.frontend + " and --backend " + o.backend + ": " + e.what();
}

}  // namespace

int run_broker(const BrokerOptions& options) {
  broker::LoopOptions loop_opts;
  try {
    check_options(options);
    loop_opts = loop_options(options);
  } catch (const std::invalid_argument& e) {
    fail(e.what());
    return 1;
  }
  warn_if_open(options);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;  // no SA_RESTART: poll returns EINTR and the loop checks
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sa.sa_handler = on_reload_signal;
  sigaction(SIGHUP, &sa, nullptr);
  // Blocked, from before ZeroMQ starts its threads (they inherit it) until we return,
  // but while the loop sleeps (Loop::run's wait_mask). Otherwise a signal may be taken
  // by a ZeroMQ thread that has not yet blocked it, or come just after the loop looked
  // at the flags, and the loop would sleep on without seeing it.
  const SignalsBlocked blocked({SIGINT, SIGTERM, SIGHUP});
  zmq::context_t ctx;
  std::optional<broker::Loop> loop;
  try {
    loop.emplace(ctx, options.frontend, options.backend, nullptr, loop_opts);
  } catch (const zmq::error_t& e) {
    loop.reset();
    ctx.close();  // frees whichever endpoint was bound before the other one failed
    fail(bind_failure(options, e));
    return 1;
  } catch (const std::runtime_error& e) {  // the authorized keys cannot be read
    fail(e.what());
    return 1;
  }
  // One line on stdout, flushed: users see where to point clients and workers, and
  // scripts that bound ":*" read the ports back from it.
  std::printf("mqpool broker: clients on %s, workers on %s\n", loop->frontend_endpoint().c_str(),
              loop->backend_endpoint().c_str());
  std::fflush(stdout);
  try {
    loop->run(&g_stop, &g_reload, &blocked.before());
  } catch (const zmq::error_t& e) {
    fail(e.what());
    return 1;
  }
  return 0;
}

}  // namespace mqpool
