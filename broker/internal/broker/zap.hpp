// The broker's admission control under CURVE (docs/SECURITY.md): the public keys of
// --authorized-keys DIR, and the ZAP handler through which ZeroMQ asks, at each
// connection's handshake, whether a key is admitted.
#pragma once

#include <array>
#include <chrono>
#include <set>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

namespace mqpool::broker {

// The endpoint a connection comes to, as its ZAP domain names it.
enum class Role { client, worker };
inline constexpr std::string_view kClientDomain = "mqpool-clients";
inline constexpr std::string_view kWorkerDomain = "mqpool-workers";

// The keys of the *.pub files, each holding one Z85 public key (as `mqpool keygen` writes
// it): DIR's own are admitted on both endpoints, DIR/clients' on the client endpoint
// only, DIR/workers' on the worker endpoint only. No sockets: tests drive it directly.
class KeyRing {
 public:
  explicit KeyRing(std::string dir) : dir_(std::move(dir)) {}

  struct Loaded {
    std::size_t keys = 0;              // distinct keys, whatever their roles
    std::vector<std::string> skipped;  // "FILE: why" for each *.pub that holds no key
  };
  // Reads the directories again and admits exactly their keys from now on. If DIR (or a
  // subdirectory that is there) cannot be read, admits none (a key that was removed must
  // not stay admitted) and throws std::runtime_error.
  Loaded load();
  // Whether the 32-byte binary key (as ZAP gives it) is admitted in `role`.
  bool admits(std::string_view key, Role role) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::array<std::set<std::string, std::less<>>, 2> keys_;  // per Role; binary, 32 bytes each
};

// The answer to one ZAP request (rfc.zeromq.org/spec/27): its frames in, the reply's out.
// CURVE requests with a key admitted for the request's domain get 200, everything else
// 400 (or 500 for a request that is not ZAP 1.0, or for a domain that is neither of ours).
// `who` is set to the Z85 key, or to what the request lacked, for the log.
std::vector<std::string> zap_reply(const std::vector<std::string>& request, const KeyRing& keys,
                                   std::string& who);

// The ZAP handler: a REP socket on inproc://zeromq.zap.01 in the broker's context, bound
// before any CURVE socket (ZeroMQ admits everyone when none is bound). Served by the
// broker's loop thread, which owns it.
class ZapHandler {
 public:
  ZapHandler(zmq::context_t& ctx, KeyRing& keys);
  zmq::socket_t& socket() { return sock_; }
  // Answers every request waiting, without blocking.
  void serve();

 private:
  void log_refusal(const std::string& who);

  zmq::socket_t sock_;
  KeyRing& keys_;
  std::chrono::steady_clock::time_point window_{};  // refusals are logged at most 10 per 10 s
  int logged_ = 0;
  std::uint64_t unlogged_ = 0;
};

}  // namespace mqpool::broker
