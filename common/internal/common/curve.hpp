// CurveZMQ (docs/SECURITY.md): the key files `mqpool keygen` writes, the socket options of
// the connecting end, and the watch that turns a refused handshake into a clear error.
// The broker's end (the authorized keys and the ZAP handler) is broker/zap.hpp.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <zmq.hpp>

namespace mqpool::detail {

// A key as its file holds it: the 40 characters of Z85 that zmq_curve_keypair gives,
// then a newline.
inline constexpr std::size_t kKeyText = 40;

// True if `text` is a key: 40 characters of Z85 that decode to 32 bytes.
bool is_key(std::string_view text);

// The key in the file `path`: its first line, without surrounding blanks. `what` begins
// the errors ("--curve-secret FILE"). Throws std::invalid_argument saying what is wrong
// (no such file, not a key).
std::string read_key(const std::string& path, std::string_view what);

// The public key of a secret key (both Z85).
std::string public_key_of(const std::string& secret);

// The keys of a client, a worker or `mqpool status`: its own pair and the broker's public key.
struct CurveClient {
  std::string secret;
  std::string public_key;
  std::string server_key;
};

// Both files read, or nullopt when both names are empty. `secret_what` and `server_what`
// name the two in errors ("--curve-secret", "PoolOptions::curve_secret_file"). Throws
// std::invalid_argument if only one is given or a file does not hold a key.
std::optional<CurveClient> load_curve_client(const std::string& secret_file,
                                             const std::string& server_key_file,
                                             std::string_view secret_what,
                                             std::string_view server_what);

// The CURVE options of a socket that connects with `keys`; before its connect.
void apply_curve(zmq::socket_t& s, const CurveClient& keys);

// Watches the handshakes of one connecting socket (a ZeroMQ socket monitor on an inproc
// PAIR) for a broker that refuses it: a key it does not admit, a broker key that is not
// the broker's, CURVE on one side only. ZeroMQ retries such a connection for ever, in
// silence; this says why. Owned by the thread that owns the socket.
class HandshakeWatch {
 public:
  // Before `s` connects. `curve`: whether `s` uses CURVE (it words the error).
  HandshakeWatch(zmq::context_t& ctx, zmq::socket_t& s, bool curve);
  // Readable when an event waits (for a poll set).
  zmq::socket_t& socket() { return events_; }
  // Takes the waiting events; why the broker refuses this peer, or "" if it does not.
  // A handshake cut off without a reason (the broker's key is wrong, or it restarted at
  // that moment) counts only after kCutOffs of them in a row with no success between.
  std::string refusal();

  static constexpr int kCutOffs = 3;

 private:
  zmq::socket_t events_;
  bool curve_;
  int cut_offs_ = 0;
};

}  // namespace mqpool::detail
