// The broker's admission control under CURVE (docs/SECURITY.md): the public keys of
// --authorized-keys DIR, and the ZAP handler through which ZeroMQ asks, at each
// connection's handshake, whether a key is admitted.
#pragma once

#include <chrono>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

namespace mqpool::broker {

// The keys of DIR's *.pub files, each holding one Z85 public key (as `mqpool keygen`
// writes it). No sockets: tests drive it directly.
class KeyRing {
 public:
  explicit KeyRing(std::string dir) : dir_(std::move(dir)) {}

  struct Loaded {
    std::size_t keys = 0;
    std::vector<std::string> skipped;  // "FILE: why" for each *.pub that holds no key
  };
  // Reads DIR again and admits exactly its keys from now on. If DIR cannot be read, admits
  // none (a key that was removed must not stay admitted) and throws std::runtime_error.
  Loaded load();
  // Whether the 32-byte binary key (as ZAP gives it) is admitted.
  bool admits(std::string_view key) const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::set<std::string, std::less<>> keys_;  // binary, 32 bytes each
};

// The answer to one ZAP request (rfc.zeromq.org/spec/27): its frames in, the reply's out.
// CURVE requests with an admitted key get 200, everything else 400 (or 500 for a request
// that is not ZAP 1.0). `who` is set to the Z85 key, or to what the request lacked, for the log.
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
