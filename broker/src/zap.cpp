#include "broker/zap.hpp"

#include <array>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "common/curve.hpp"
#include "common/log.hpp"

namespace mqpool::broker {

namespace fs = std::filesystem;

namespace {
using Keys = std::set<std::string, std::less<>>;

// Adds the keys of `dir`'s *.pub files to each of `into`. Throws std::runtime_error if
// `dir` cannot be read (a missing subdirectory is none, and not an error).
void read_dir(const fs::path& dir, bool optional, const std::vector<Keys*>& into,
              std::vector<std::string>& skipped) {
  std::error_code ec;
  if (optional && !fs::exists(dir, ec)) return;
  fs::directory_iterator it(dir, ec);
  if (ec) throw std::runtime_error("--authorized-keys " + dir.string() + ": " + ec.message());
  for (const fs::directory_entry& entry : it) {
    if (entry.path().extension() != ".pub") continue;
    try {
      const std::string z85 = detail::read_key(entry.path().string(), "authorized key");
      std::array<std::uint8_t, 32> bin{};
      zmq_z85_decode(bin.data(), z85.c_str());
      for (Keys* keys : into) keys->emplace(reinterpret_cast<const char*>(bin.data()), bin.size());
    } catch (const std::invalid_argument& e) {
      skipped.emplace_back(e.what());
    }
  }
}
}  // namespace

KeyRing::Loaded KeyRing::load() {
  for (Keys& k : keys_) k.clear();
  Loaded loaded;
  std::array<Keys, 2> keys;
  Keys& clients = keys[static_cast<int>(Role::client)];
  Keys& workers = keys[static_cast<int>(Role::worker)];
  read_dir(dir_, false, {&clients, &workers}, loaded.skipped);
  read_dir(fs::path(dir_) / "clients", true, {&clients}, loaded.skipped);
  read_dir(fs::path(dir_) / "workers", true, {&workers}, loaded.skipped);
  Keys all = clients;
  all.insert(workers.begin(), workers.end());
  loaded.keys = all.size();
  keys_ = std::move(keys);
  return loaded;
}

bool KeyRing::admits(std::string_view key, Role role) const {
  return keys_[static_cast<int>(role)].contains(key);
}

std::vector<std::string> zap_reply(const std::vector<std::string>& request, const KeyRing& keys,
                                   std::string& who) {
  // version, request id, domain, address, identity, mechanism, credentials...
  const std::string id = request.size() > 1 ? request[1] : "";
  auto reply = [&](const char* code, const char* text) {
    return std::vector<std::string>{"1.0", id, code, text, "", ""};
  };
  if (request.size() < 6 || request[0] != "1.0") {
    who = "a request that is not ZAP 1.0";
    return reply("500", "not a ZAP 1.0 request");
  }
  if (request[2] != kClientDomain && request[2] != kWorkerDomain) {
    who = "a request for the unknown domain '" + request[2] + "'";
    return reply("500", "unknown domain");
  }
  const Role role = request[2] == kClientDomain ? Role::client : Role::worker;
  if (request[5] != "CURVE" || request.size() != 7 || request[6].size() != 32) {
    who = "a peer without a CURVE key (mechanism " + request[5] + ")";
    return reply("400", "CURVE key required");
  }
  std::array<char, detail::kKeyText + 1> z85{};
  zmq_z85_encode(z85.data(), reinterpret_cast<const std::uint8_t*>(request[6].data()), 32);
  who = z85.data();
  who += role == Role::client ? " (client endpoint)" : " (worker endpoint)";
  if (!request[3].empty()) who += " from " + request[3];
  if (!keys.admits(request[6], role)) return reply("400", "key not authorized");
  return {"1.0", id, "200", "OK", std::string(z85.data()), ""};
}

ZapHandler::ZapHandler(zmq::context_t& ctx, KeyRing& keys)
    : sock_(ctx, zmq::socket_type::rep), keys_(keys) {
  sock_.set(zmq::sockopt::linger, 0);
  sock_.bind("inproc://zeromq.zap.01");
}

void ZapHandler::serve() {
  // Each request is whole when its first frame is readable: inproc delivers the parts
  // of a message together.
  zmq::message_t frame;
  while (sock_.recv(frame, zmq::recv_flags::dontwait)) {
    std::vector<std::string> request{frame.to_string()};
    while (frame.more() && sock_.recv(frame, zmq::recv_flags::none))
      request.push_back(frame.to_string());
    std::string who;
    const std::vector<std::string> reply = zap_reply(request, keys_, who);
    if (reply[2] != "200") log_refusal(who);
    for (std::size_t i = 0; i < reply.size(); ++i)
      sock_.send(zmq::buffer(reply[i]),
                 i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
}

void ZapHandler::log_refusal(const std::string& who) {
  const auto now = std::chrono::steady_clock::now();
  if (now - window_ >= std::chrono::seconds(10)) {
    window_ = now;
    logged_ = 0;
  }
  if (logged_ == 10) {
    ++unlogged_;
    return;
  }
  ++logged_;
  std::string more;
  if (unlogged_ > 0) more = " (" + std::to_string(unlogged_) + " more not logged before this)";
  unlogged_ = 0;
  detail::log().warn("broker: refused a connection: {}{}", who, more);
}

}  // namespace mqpool::broker
