#include "common/curve.hpp"

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>

namespace mqpool::detail {

bool is_key(std::string_view text) {
  if (text.size() != kKeyText) return false;
  const std::string z(text);  // zmq_z85_decode wants a NUL-terminated string
  std::array<std::uint8_t, 32> bytes{};
  return zmq_z85_decode(bytes.data(), z.c_str()) != nullptr;
}

std::string read_key(const std::string& path, std::string_view what) {
  const std::string where = std::string(what) + " " + path;
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(where + ": " + std::strerror(errno));
  std::string line;
  std::getline(in, line);
  const auto first = line.find_first_not_of(" \t\r");
  const auto last = line.find_last_not_of(" \t\r");
  std::string key = first == std::string::npos ? "" : line.substr(first, last - first + 1);
  if (!is_key(key))
    throw std::invalid_argument(where +
                                ": not a CurveZMQ key (40 characters of Z85, as `mqpool "
                                "keygen` writes them)");
  return key;
}

std::string public_key_of(const std::string& secret) {
  std::array<char, kKeyText + 1> pub{};
  if (zmq_curve_public(pub.data(), secret.c_str()) != 0)
    throw std::system_error(errno, std::generic_category(), "zmq_curve_public");
  return pub.data();
}

std::optional<CurveClient> load_curve_client(const std::string& secret_file,
                                             const std::string& server_key_file,
                                             std::string_view secret_what,
                                             std::string_view server_what) {
  if (secret_file.empty() && server_key_file.empty()) return std::nullopt;
  if (secret_file.empty() || server_key_file.empty())
    throw std::invalid_argument(std::string(secret_file.empty() ? server_what : secret_what) +
                                " needs " +
                                std::string(secret_file.empty() ? secret_what : server_what) +
                                " too: CURVE takes this side's secret key and the broker's "
                                "public key");
  CurveClient keys;
  keys.secret = read_key(secret_file, secret_what);
  keys.server_key = read_key(server_key_file, server_what);
  keys.public_key = public_key_of(keys.secret);
  return keys;
}

void apply_curve(zmq::socket_t& s, const CurveClient& keys) {
  s.set(zmq::sockopt::curve_serverkey, keys.server_key);
  s.set(zmq::sockopt::curve_publickey, keys.public_key);
  s.set(zmq::sockopt::curve_secretkey, keys.secret);
}

namespace {
constexpr int kWatched = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                         ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
}  // namespace

HandshakeWatch::HandshakeWatch(zmq::context_t& ctx, zmq::socket_t& s, bool curve)
    : events_(ctx, zmq::socket_type::pair), curve_(curve) {
  const std::string addr =
      "inproc://mqpool-handshake-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
  if (zmq_socket_monitor(s.handle(), addr.c_str(), kWatched) != 0) throw zmq::error_t();
  events_.set(zmq::sockopt::linger, 0);
  events_.connect(addr);
}

std::string HandshakeWatch::refusal() {
  std::string why;
  zmq::message_t frame;
  // Each event is two frames: 16-bit event and 32-bit value, then the endpoint.
  while (events_.recv(frame, zmq::recv_flags::dontwait)) {
    if (frame.size() < 6 || !frame.more()) continue;  // an endpoint frame
    std::uint16_t event = 0;
    std::memcpy(&event, frame.data(), sizeof event);
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
      cut_offs_ = 0;
      why.clear();
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
      why = "the broker refused this key (it is not among the broker's authorized keys)";
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
      why = curve_ ? "the broker refused this key: the CURVE handshake failed (does the "
                     "broker use CURVE?)"
                   : "the broker refused this connection: the handshake failed (the broker "
                     "may require CURVE keys: --curve-secret and --broker-key)";
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && ++cut_offs_ >= kCutOffs) {
      why = curve_ ? "the broker refused this key: the CURVE handshake was cut off " +
                         std::to_string(cut_offs_) +
                         " times (is the broker key the broker's own public key?)"
                   : "the broker refused this connection: the handshake was cut off " +
                         std::to_string(cut_offs_) +
                         " times (the broker may require CURVE keys: --curve-secret and "
                         "--broker-key)";
    }
  }
  return why;
}

}  // namespace mqpool::detail
