// Hostile input (docs/SECURITY.md, "What reaches the ports"): a peer sends thousands of
// malformed messages to both of a broker's endpoints, raw bytes that are not ZMTP, frames
// beyond the broker's --max-message, and connections that never speak. Afterwards the
// broker and the worker are alive, an ordinary map is served correctly, the broker
// counted what it dropped, and its peak memory stayed bounded. Then the same for a
// client's decoders, from a broker that lies.
//
// The broker and worker are this binary in their roles (main.cpp), over ipc, whose
// sockets a raw AF_UNIX connection reaches like a TCP one. The figures go to stdout.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <iostream>
#include <mqpool/cluster.hpp>
#include <mqpool/mqpool.hpp>
#include <random>
#include <thread>
#include <zmq.hpp>

#include "common.hpp"
#include "common/protocol.hpp"
#include "tests/sanitizers.hpp"

namespace ftest {
namespace {

namespace proto = mqpool::proto;
using namespace std::chrono_literals;

constexpr std::int64_t kMaxMessage = std::int64_t{1} << 20;  // the broker's --max-message
constexpr std::size_t kPeakLimit = std::size_t{256} << 20;

// The peak resident memory of a process (VmHWM), in bytes.
std::size_t peak_rss(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  std::size_t kib = 0;
  while (status >> key)
    if (key == "VmHWM:" && status >> kib) return kib * 1024;
  return 0;
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// A connected AF_UNIX socket on an ipc endpoint's path, or -1.
int raw_connect(const std::string& endpoint) {
  const std::string path = endpoint.substr(std::string("ipc://").size());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

void write_all(int fd, const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the broker may hang up first: that is its right
    off += static_cast<std::size_t>(n);
  }
}

// True if the peer closes the connection within `limit` (what it sends is read away).
bool closed_within(int fd, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::array<char, 4096> buf{};
  while (std::chrono::steady_clock::now() < deadline) {
    timeval tv{0, 100000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
  }
  return false;
}

// ZMTP 3.0's greeting for `mechanism`, as a client.
std::string greeting(const std::string& mechanism, char major = 3) {
  std::string g("\xff\0\0\0\0\0\0\0\x01\x7f", 10);
  g += major;
  g += '\0';
  std::string mech = mechanism;
  mech.resize(20, '\0');
  return g + mech + std::string(32, '\0');  // as-server 0, filler
}

// The NULL mechanism's READY command, naming a DEALER.
std::string ready_command() {
  const std::string type = "DEALER";
  std::string body = "\x05READY";
  body += static_cast<char>(11);
  body += "Socket-Type";
  body += std::string("\0\0\0", 3) + static_cast<char>(type.size()) + type;
  return std::string(1, '\x04') + static_cast<char>(body.size()) + body;
}

// The hostile peer: everything it sends is wrong in one way or another.
class Noise {
 public:
  explicit Noise(std::uint32_t seed) : rng_(seed) {}

  std::string bytes(std::size_t max) {
    std::string s(pick(max + 1), '\0');
    for (char& c : s) c = static_cast<char>(rng_());
    return s;
  }
  std::size_t pick(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }

  // One malformed message: its frames, from the tag on (a DEALER adds no envelope).
  std::vector<std::string> message() {
    static const std::array<std::uint8_t, 17> cmds = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                                      0x07, 0x08, 0x09, 0x10, 0x11, 0x12,
                                                      0x13, 0x14, 0x15, 0x16, 0x17};
    const std::string tag(proto::kTag);
    const std::string cmd(1, static_cast<char>(cmds[pick(cmds.size())]));
    switch (pick(7)) {
      case 0:  // random frames
        return frames(1 + pick(4));
      case 1:  // another protocol's tag, or an unknown command
        return {pick(2) == 0 ? "MQP1" : tag, std::string(1, static_cast<char>(0x20 + pick(200))),
                bytes(32)};
      case 2:  // a known command, a header of random bytes
        return {tag, cmd, bytes(64), bytes(16)};
      case 3:  // msgpack that declares far more than it holds
        return {tag, cmd, huge_declaration()};
      case 4: {  // a real header cut short
        std::string h = real_header();
        h.resize(pick(h.size()));
        return {tag, cmd, h, bytes(8)};
      }
      case 5:  // a real header with the wrong number of payload frames
        return with(frames(pick(2) == 0 ? 0 : 3),
                    {tag, pick(2) == 0 ? "\x01" : "\x12", chunk_ids()});
      default:  // only a tag, or a tag and a command
        return pick(2) == 0 ? std::vector<std::string>{tag} : std::vector<std::string>{tag, cmd};
    }
  }

 private:
  std::vector<std::string> frames(std::size_t n) {
    std::vector<std::string> f;
    for (std::size_t i = 0; i < n; ++i) f.push_back(bytes(64));
    return f;
  }
  static std::vector<std::string> with(std::vector<std::string> tail,
                                       std::vector<std::string> head) {
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
  }
  std::string huge_declaration() {
    switch (pick(5)) {
      case 0:
        return std::string("\xdd\xff\xff\xff\xff", 5);  // array32 of 4 G elements
      case 1:
        return std::string("\xdf\xff\xff\xff\xff", 5);  // map32 of 4 G pairs
      case 2:
        return std::string("\x91\xdb\xff\xff\xff\xff", 6) + bytes(8);  // [str32 of 4 GiB]
      case 3:
        return std::string("\x91\xc6\x7f\xff\xff\xff", 6);  // [bin32 of 2 GiB]
      default:
        return std::string(100000, '\x91');  // arrays nested 100,000 deep
    }
  }
  std::string real_header() {
    switch (pick(3)) {
      case 0: {
        const proto::ChunkSpec c{1, 0, 3, "failure.nap", 0, 0, false};
        return as_string(proto::encode(std::vector<proto::ChunkSpec>{c, c}));
      }
      case 1:
        return as_string(proto::encode(proto::Ready{7, 42, "host", 1, 0, 1000, 3}));
      default:
        return as_string(proto::encode(proto::AgentHello{7, 42, "host", {"a", "b"}, 2, 1000, 3}));
    }
  }
  std::string chunk_ids() { return as_string(proto::encode(std::vector<std::uint64_t>{1, 2})); }
  static std::string as_string(const zmq::message_t& m) {
    return std::string(m.data<char>(), m.size());
  }

  std::mt19937 rng_;
};

// Sends one message's frames; false if the socket had no room within its send timeout.
bool send_frames(zmq::socket_t& s, const std::vector<std::string>& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const auto flags = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
    if (!s.send(zmq::buffer(frames[i]), flags)) return false;
  }
  return true;
}

// Receives and forgets whatever the broker answered (RESETs, REFUSEDs, RESULTs).
void drain(zmq::socket_t& s) {
  zmq::message_t m;
  while (s.recv(m, zmq::recv_flags::dontwait)) {
  }
}

struct Figures {
  std::uint64_t messages = 0, raw_connections = 0, silent = 0, oversized = 0;
};

// Thousands of malformed messages through ZeroMQ to `endpoint`, from a few peers.
void flood_messages(zmq::context_t& ctx, const std::string& endpoint, Noise& noise, std::uint64_t n,
                    Figures& f) {
  for (int peer = 0; peer < 4; ++peer) {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 2000);  // what is queued still goes out at the close
    s.set(zmq::sockopt::sndtimeo, 5000);
    s.set(zmq::sockopt::sndhwm, 0);
    s.connect(endpoint);
    for (std::uint64_t i = 0; i < n / 4; ++i) {
      ASSERT_TRUE(send_frames(s, noise.message())) << "the broker stopped reading";
      ++f.messages;
      if (i % 256 == 0) drain(s);
    }
    // A frame beyond --max-message: refused by its declared size; the connection closes.
    ASSERT_TRUE(
        send_frames(s, {std::string(proto::kTag), "\x01", std::string(2 * kMaxMessage, 'x')}));
    ++f.oversized;
    drain(s);
  }
}

// Streams that are not ZMTP, and one that is, until it declares a 1 TiB frame.
void flood_raw(const std::string& endpoint, Noise& noise, int n, Figures& f) {
  for (int i = 0; i < n; ++i) {
    const int fd = raw_connect(endpoint);
    ASSERT_GE(fd, 0) << "cannot connect to " << endpoint;
    ++f.raw_connections;
    switch (i % 4) {
      case 0:
        write_all(fd, noise.bytes(4096));
        break;
      case 1:
        write_all(fd, greeting("NULL", 1) + noise.bytes(64));  // ZMTP 1.0
        break;
      case 2:
        write_all(fd, greeting("EVIL") + noise.bytes(64));  // no such mechanism
        break;
      default: {
        // A real handshake, then a frame whose 8-byte size says 2^40: the broker must
        // hang up on it rather than ask for the memory.
        std::string huge("\x02\0\0\x01\0\0\0\0\0", 9);
        write_all(fd, greeting("NULL") + ready_command() + huge);
        EXPECT_TRUE(closed_within(fd, kLong)) << "the broker kept a connection that declared 1 TiB";
      }
    }
    ::close(fd);
  }
}

// A client that greets the broker properly, then submits chunks whose arguments are
// random bytes: each reaches an executor, whose decoder must answer every task (with a
// SerializationError, mostly) rather than crash. Returns the tasks answered.
std::uint64_t garbage_arguments(zmq::context_t& ctx, const std::string& endpoint, Noise& noise,
                                std::uint32_t chunks) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, static_cast<int>(kLong.count()));
  s.connect(endpoint);
  proto::send(s, proto::make(proto::Cmd::hello, proto::Hello{99, "garbage:1", 1000, 60}), false);
  std::uint64_t sent = 0, answered = 0;
  for (std::uint32_t i = 0; i < chunks; ++i) {
    const auto count = static_cast<std::uint32_t>(1 + noise.pick(4));
    std::string args = noise.bytes(64);
    args.resize(std::max<std::size_t>(args.size(), count), '\xc1');  // 0xc1: never valid msgpack
    proto::Message m =
        proto::make(proto::Cmd::submit,
                    std::vector<proto::ChunkSpec>{{1, sent, count, "failure.nap", 0, 0, false}});
    m.frames.emplace_back(args.data(), args.size());
    proto::send(s, std::move(m), false);
    sent += count;
  }
  const auto deadline = std::chrono::steady_clock::now() + kLong;
  while (answered < sent && std::chrono::steady_clock::now() < deadline) {
    auto m = proto::recv(s, false, zmq::recv_flags::none);
    if (!m || m->cmd != proto::Cmd::result) continue;
    for (const proto::ResultSpec& r : proto::decode<std::vector<proto::ResultSpec>>(*m))
      answered += r.count;
  }
  EXPECT_EQ(answered, sent) << "the executors did not answer every task of garbage";
  return answered;
}

class HostileCluster {
 public:
  explicit HostileCluster(const TempDir& dir)
      : dir_(dir),
        broker_("broker", dir.path(), {std::to_string(kMaxMessage)}, dir.file("broker.err")),
        worker_("worker", dir.path(), {"--connect", back(), "--processes", "2"},
                dir.file("worker.err")) {}
  std::string front() const { return "ipc://" + dir_.file("front"); }
  std::string back() const { return "ipc://" + dir_.file("back"); }
  Scenario& broker() { return broker_; }
  Scenario& worker() { return worker_; }

 private:
  const TempDir& dir_;
  Scenario broker_;
  Scenario worker_;
};

TEST(Hostile, ABrokerFloodedWithMalformedInputServesAnOrdinaryMapAfterwards) {
  TempDir dir;
  HostileCluster c(dir);
  mqpool::PoolOptions o{.connect = c.front(), .connect_timeout = kLong};
  {
    // The worker is in before the noise starts: whatever follows, it must survive.
    mqpool::Pool first(o);
    ASSERT_EQ(bounded(kLong, "first map",
                      [&] { return first.map(nap, std::vector<std::int64_t>(4, 0)); }),
              std::vector<std::int64_t>(4, 0));
  }
  zmq::context_t ctx;
  Noise noise(20261203);
  Figures f;
  for (const std::string& ep : {c.front(), c.back()}) {
    flood_messages(ctx, ep, noise, 6000, f);
    flood_raw(ep, noise, 100, f);
  }
  const std::uint64_t garbage = garbage_arguments(ctx, c.front(), noise, 2000);
  std::vector<int> silent;  // connections that never speak, open while the map runs
  for (int i = 0; i < 1000; ++i) {
    const int fd = raw_connect(i % 2 == 0 ? c.front() : c.back());
    ASSERT_GE(fd, 0);
    silent.push_back(fd);
  }
  f.silent = silent.size();

  std::vector<std::int64_t> in;
  for (std::int64_t i = 0; i < 200; ++i) in.push_back(i % 3);
  mqpool::Pool pool(o);
  EXPECT_EQ(bounded(kLong, "map after the noise", [&] { return pool.map(nap, in); }), in);
  for (int fd : silent) ::close(fd);

  EXPECT_TRUE(alive(c.broker().pid()));
  EXPECT_TRUE(alive(c.worker().pid()));
  const mqpool::BrokerStatus s = mqpool::broker_status(c.front(), kPrompt);
  // Not all of them: a well-formed message from a peer it does not know gets RESET.
  EXPECT_GT(s.malformed, f.messages / 3) << "the broker did not count what it dropped";
  ASSERT_EQ(s.workers.size(), 1u) << "a hostile peer passed for a worker";
  const std::size_t peak = peak_rss(c.broker().pid());
  EXPECT_LT(peak, kPeakLimit);
  std::cout << "hostile: " << f.messages << " malformed messages, " << f.oversized
            << " oversized frames, " << f.raw_connections << " raw connections, " << f.silent
            << " silent connections, " << garbage
            << " tasks of random arguments answered; broker counted " << s.malformed
            << " malformed, peak RSS " << peak / (1024 * 1024) << " MiB\n";
}

// The client side of a broker that lies: every answer it gives comes after a burst of
// malformed ones, and only the answers it means (7 for every task) may reach the caller.
class LyingBroker {
 public:
  explicit LyingBroker(const TempDir& dir) : endpoint_("ipc://" + dir.file("liar")) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::sndhwm, 0);
    sock_.bind(endpoint_);
    thread_ = std::thread([this] { serve(); });
  }
  ~LyingBroker() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }
  std::uint64_t junk() const { return junk_; }

 private:
  void serve() {
    zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
    while (!stop_) {
      if (zmq::poll(&item, 1, 50ms) == 0) continue;
      auto m = proto::recv(sock_, true, zmq::recv_flags::dontwait);
      if (!m) continue;
      lie(m->peer);
      if (m->cmd == proto::Cmd::hello)
        proto::send(sock_, proto::make(proto::Cmd::welcome, proto::Welcome{1, 1}, m->peer), true);
      if (m->cmd == proto::Cmd::heartbeat)
        proto::send(sock_, proto::make(proto::Cmd::heartbeat, std::vector<int>{}, m->peer), true);
      if (m->cmd == proto::Cmd::submit) answer(*m);
    }
  }
  void answer(const proto::Message& m) {
    for (const proto::ChunkSpec& c : proto::decode<std::vector<proto::ChunkSpec>>(m)) {
      proto::Message r = proto::make(
          proto::Cmd::result, std::vector<proto::ResultSpec>{{c.job, c.seq, c.count}}, m.peer);
      r.frames.emplace_back();                    // no errors
      const std::string sevens(c.count, '\x07');  // msgpack 7 per task
      r.frames.emplace_back(sevens.data(), sevens.size());
      proto::send(sock_, std::move(r), true);
    }
  }
  // Malformed messages, and RESULTs for jobs the client never had.
  void lie(const std::string& peer) {
    for (int i = 0; i < 200; ++i) {
      std::vector<std::string> frames = noise_.message();
      if (i % 5 == 0) {
        proto::Message r =
            proto::make(proto::Cmd::result, std::vector<proto::ResultSpec>{{1u << 30, 0, 2}}, peer);
        r.frames.emplace_back();
        r.frames.emplace_back("\x01\x01", 2);
        proto::send(sock_, std::move(r), true);
      } else {
        frames.insert(frames.begin(), peer);
        for (std::size_t k = 0; k < frames.size(); ++k)
          sock_.send(zmq::buffer(frames[k]),
                     k + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
      ++junk_;
    }
  }

  std::string endpoint_;
  zmq::context_t ctx_;
  zmq::socket_t sock_{ctx_, zmq::socket_type::router};
  Noise noise_{7};
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> junk_{0};
  std::thread thread_;
};

TEST(Hostile, AClientTakesOnlyTheAnswersMeantForItFromABrokerThatSendsJunk) {
  // Under ASan, LeakSanitizer finds at exit, in 3 runs of 40, about 460 bytes leaked
  // indirectly (no direct leak: a cycle of blocks) that libzmq's own I/O thread
  // allocated, every frame of the stack inside libzmq; the liar's junk makes the client
  // drop and remake its connection some thirty times in this test. The plain builds run
  // it; ASan checks our decoding of such junk in the fuzz targets.
  MQPOOL_SKIP_UNDER_ASAN("libzmq's I/O thread leaks during the liar's reconnections");
  TempDir dir;
  LyingBroker liar(dir);
  mqpool::Pool pool(mqpool::PoolOptions{.connect = liar.endpoint(), .connect_timeout = kLong});
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(nap, std::int64_t{5}); }), 7);
  EXPECT_EQ(bounded(kLong, "map", [&] { return pool.map(nap, std::vector<std::int64_t>(50, 1)); }),
            std::vector<std::int64_t>(50, 7));
  std::cout << "hostile: the client dropped " << liar.junk() << " malformed or foreign messages\n";
}

}  // namespace
}  // namespace ftest
