// proto::send / proto::recv over real sockets: a ROUTER bound to tcp://127.0.0.1:* (the
// port read back, never fixed) with a DEALER, and an inproc PAIR. Every receive waits
// with a deadline (poll first, and ZMQ_RCVTIMEO as a backstop), so a bug fails, not hangs.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/log.hpp"
#include "common/protocol.hpp"

namespace {

using mqpool::SerializationError;
namespace proto = mqpool::proto;
using proto::Cmd;

constexpr auto kDeadline = std::chrono::seconds(5);

std::string bytes(const zmq::message_t& m) { return std::string(m.data<char>(), m.size()); }

void arm(zmq::socket_t& s) {
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, 5000);
  s.set(zmq::sockopt::sndtimeo, 5000);
}

// Waits up to kDeadline for a message, then receives it without blocking.
std::optional<proto::Message> recv_within(zmq::socket_t& s, bool routed) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, kDeadline) == 0)
    throw std::runtime_error("no message within the deadline");
  return proto::recv(s, routed, zmq::recv_flags::dontwait);
}

void send_raw(zmq::socket_t& s, const std::vector<std::string>& parts) {
  for (std::size_t i = 0; i < parts.size(); ++i)
    s.send(zmq::buffer(parts[i]),
           i + 1 == parts.size() ? zmq::send_flags::none : zmq::send_flags::sndmore);
}

struct RouterDealer : ::testing::Test {
  zmq::context_t ctx;
  zmq::socket_t router{ctx, zmq::socket_type::router};
  zmq::socket_t dealer{ctx, zmq::socket_type::dealer};
  const std::string dealer_id = std::string("D\0ealer", 7);  // binary ids must survive

  void SetUp() override {
    arm(router);
    arm(dealer);
    router.set(zmq::sockopt::router_mandatory, 1);
    router.bind("tcp://127.0.0.1:*");
    const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
    ASSERT_NE(endpoint.find("tcp://127.0.0.1:"), std::string::npos);
    dealer.set(zmq::sockopt::routing_id, zmq::buffer(dealer_id));
    dealer.connect(endpoint);
  }

  proto::Message good(std::uint32_t pid) {
    proto::Message m = proto::make(Cmd::ready, proto::Ready{1, pid, "h", 2, 0});
    m.frames.emplace_back(std::string_view("payload"));
    return m;
  }

  void expect_good(std::optional<proto::Message> m, std::uint32_t pid, const std::string& peer) {
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->peer, peer);
    EXPECT_EQ(m->cmd, Cmd::ready);
    EXPECT_EQ(proto::decode<proto::Ready>(*m).pid, pid);
    ASSERT_EQ(m->frames.size(), 1u);
    EXPECT_EQ(bytes(m->frames[0]), "payload");
  }
};

TEST_F(RouterDealer, DealerToRouterCarriesPeerCommandHeaderAndFrames) {
  proto::Message m = proto::make(
      Cmd::submit, std::vector<proto::ChunkSpec>{{0, 1, 2, "fn", 0, 0}, {0, 3, 1, "fn", 0, 0}});
  const std::string big(1 << 20, 'b');
  m.frames.emplace_back(big.data(), big.size());
  m.frames.emplace_back();  // an empty payload frame is a frame too
  const std::string header = bytes(m.header);
  ASSERT_TRUE(proto::send(dealer, std::move(m), false));

  auto got = recv_within(router, true);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->peer, dealer_id);
  EXPECT_EQ(got->cmd, Cmd::submit);
  EXPECT_EQ(bytes(got->header), header);
  ASSERT_EQ(got->frames.size(), 2u);
  EXPECT_EQ(bytes(got->frames[0]), big);
  EXPECT_EQ(got->frames[1].size(), 0u);
  EXPECT_EQ(proto::decode<std::vector<proto::ChunkSpec>>(*got).size(), 2u);
}

TEST_F(RouterDealer, RouterRepliesToThePeerItHeardFrom) {
  ASSERT_TRUE(proto::send(dealer, good(1), false));
  auto hello = recv_within(router, true);
  ASSERT_TRUE(hello.has_value());

  proto::Message reply = proto::make(Cmd::kill, proto::Kill{99}, hello->peer);  // no payload
  ASSERT_TRUE(proto::send(router, std::move(reply), true));
  auto got = recv_within(dealer, false);
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->peer.empty());
  EXPECT_EQ(got->cmd, Cmd::kill);
  EXPECT_EQ(proto::decode<proto::Kill>(*got).pid, 99u);
  EXPECT_TRUE(got->frames.empty());
}

TEST_F(RouterDealer, SendToAnUnknownPeerReturnsFalse) {
  EXPECT_FALSE(proto::send(router, proto::make(Cmd::kill, proto::Kill{1}, "nobody"), true));
}

TEST_F(RouterDealer, RecvWithDontwaitOnAnEmptySocketIsEmpty) {
  EXPECT_FALSE(proto::recv(router, true, zmq::recv_flags::dontwait).has_value());
  EXPECT_FALSE(proto::recv(dealer, false, zmq::recv_flags::dontwait).has_value());
}

TEST_F(RouterDealer, MalformedEnvelopesThrowAfterConsumingAllTheirFrames) {
  const std::string header = bytes(proto::encode(proto::Ready{1, 1, "h", 1, 0}));
  const std::vector<std::vector<std::string>> bad{
      {"MQP1", "\x10", header, "extra", "extra"},  // an older protocol's tag
      {"", "\x10", header},                        // empty tag
      {"MQP2", "\x7f", header, "extra"},           // unknown command
      {"MQP2", std::string(1, '\0'), header},      // command 0 is not a command
      {"MQP2", "\x10\x10", header},                // a two-byte command frame
      {"MQP2", "", header},                        // an empty command frame
      {"MQP2", "\x10"},                            // no header
      {"MQP2"},                                    // tag only
      {"x"},                                       // a single stray frame
  };
  for (std::size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE("malformed message " + std::to_string(i));
    send_raw(dealer, bad[i]);
    ASSERT_TRUE(proto::send(dealer, good(static_cast<std::uint32_t>(100 + i)), false));
    EXPECT_THROW(recv_within(router, true), SerializationError);
    expect_good(recv_within(router, true), static_cast<std::uint32_t>(100 + i), dealer_id);
  }
}

TEST_F(RouterDealer, MalformedEnvelopeOnTheDealerSideThrowsToo) {
  ASSERT_TRUE(proto::send(dealer, good(1), false));
  auto hello = recv_within(router, true);
  ASSERT_TRUE(hello.has_value());
  send_raw(router, {dealer_id, "NOPE", "\x15", "h", "f1", "f2"});
  proto::Message ok = good(7);
  ok.peer = dealer_id;
  ASSERT_TRUE(proto::send(router, std::move(ok), true));
  send_raw(router, {dealer_id, "MQP2", "\x15"});  // too few frames, last in the queue
  EXPECT_THROW(recv_within(dealer, false), SerializationError);
  expect_good(recv_within(dealer, false), 7, "");
  EXPECT_THROW(recv_within(dealer, false), SerializationError);
  EXPECT_FALSE(proto::recv(dealer, false, zmq::recv_flags::dontwait).has_value());
}

// --- proto::Receiver: the one malformed-message policy ----------------------------------------

// The library's log lines (message text only) while it lives, at warn level and above.
struct LogCapture {
  std::ostringstream out;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink =
      std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::level::level_enum level = mqpool::detail::log().level();

  LogCapture() {
    sink->set_pattern("%l %v");
    mqpool::detail::log().sinks().push_back(sink);
    mqpool::detail::log().set_level(spdlog::level::warn);
  }
  ~LogCapture() {
    auto& sinks = mqpool::detail::log().sinks();
    sinks.erase(std::find(sinks.begin(), sinks.end(), sink));
    mqpool::detail::log().set_level(level);
  }
  std::vector<std::string> lines() {
    mqpool::detail::log().flush();
    std::vector<std::string> v;
    std::istringstream in(out.str());
    for (std::string line; std::getline(in, line);) v.push_back(line);
    return v;
  }
};

std::string hex(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    out += "0123456789abcdef"[c >> 4];
    out += "0123456789abcdef"[c & 0xf];
  }
  return out;
}

struct ReceiverTest : RouterDealer {
  std::uint64_t dropped = 0;
  proto::Receiver receiver{"test", "a dealer", &dropped};
  std::vector<std::uint32_t> pids;  // of the good messages handled, in order

  // Drains (in rounds of `limit`) until `n` messages were handled or dropped.
  void drain_until(std::size_t n, std::size_t limit = proto::Receiver::kNoLimit) {
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (pids.size() + dropped < n) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "messages missing";
      zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      receiver.drain(
          router, true,
          [this](proto::Message& m) {
            EXPECT_EQ(m.peer, dealer_id);
            pids.push_back(proto::decode<proto::Ready>(m).pid);
          },
          limit);
    }
  }
};

TEST_F(ReceiverTest, AMalformedMessageIsDroppedCountedLoggedAndTheNextGoodOneHandled) {
  LogCapture log;
  const std::string header = bytes(proto::encode(proto::Ready{1, 1, "h", 1, 0}));
  send_raw(dealer, {"MQP1", "\x10", header, "extra"});
  ASSERT_TRUE(proto::send(dealer, good(1), false));
  send_raw(dealer, {"MQP2", "\x7f", header});
  // A well-formed envelope whose header is no Ready: the handler's SerializationError.
  ASSERT_TRUE(proto::send(dealer, proto::make(Cmd::ready, std::string("not a Ready")), false));
  ASSERT_TRUE(proto::send(dealer, good(2), false));
  drain_until(5);
  EXPECT_EQ(pids, (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(dropped, 3u);
  const std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 3u);
  const std::string from =
      "warning test: dropped a malformed message from a dealer (id " + hex(dealer_id) + "): ";
  EXPECT_EQ(lines[0], from + "not an MQP2 message");
  EXPECT_EQ(lines[1], from + "unknown command");
  EXPECT_EQ(lines[2], from + "cannot decode a msgpack string as mqpool::proto::Ready");
}

TEST_F(ReceiverTest, ADrainTakesAtMostItsLimitMalformedOnesIncluded) {
  send_raw(dealer, {"junk"});
  for (std::uint32_t pid = 1; pid <= 4; ++pid) ASSERT_TRUE(proto::send(dealer, good(pid), false));
  zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
  ASSERT_EQ(zmq::poll(&item, 1, kDeadline), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // all five arrive
  receiver.drain(
      router, true,
      [this](proto::Message& m) { pids.push_back(proto::decode<proto::Ready>(m).pid); }, 2);
  EXPECT_EQ(dropped, 1u);
  EXPECT_EQ(pids, std::vector<std::uint32_t>{1});
  drain_until(5, 2);
  EXPECT_EQ(pids, (std::vector<std::uint32_t>{1, 2, 3, 4}));
}

TEST_F(ReceiverTest, OtherFailuresPropagateUnlessTheReceiverDropsThem) {
  ASSERT_TRUE(proto::send(dealer, good(1), false));
  ASSERT_TRUE(proto::send(dealer, good(2), false));
  ASSERT_TRUE(proto::send(dealer, good(3), false));
  auto fail_on_1 = [this](proto::Message& m) {
    const std::uint32_t pid = proto::decode<proto::Ready>(m).pid;
    if (pid == 1) throw std::runtime_error("handler failed");
    pids.push_back(pid);
  };
  zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
  ASSERT_EQ(zmq::poll(&item, 1, kDeadline), 1);
  EXPECT_THROW(receiver.drain(router, true, fail_on_1), std::runtime_error);
  EXPECT_EQ(dropped, 0u);

  ASSERT_TRUE(proto::send(dealer, good(1), false));
  LogCapture log;
  proto::Receiver dropping{"test", "a dealer", &dropped, proto::Receiver::Others::drop};
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (pids.size() + dropped < 3 && std::chrono::steady_clock::now() < deadline) {
    zmq::poll(&item, 1, std::chrono::milliseconds(100));
    dropping.drain(router, true, fail_on_1);
  }
  EXPECT_EQ(pids, (std::vector<std::uint32_t>{2, 3}));
  EXPECT_EQ(dropped, 1u);
  const std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "error test: failed to handle a message from a dealer (id " + hex(dealer_id) +
                          "): handler failed");
}

TEST_F(ReceiverTest, ItLogsAtMostABurstPerWindowAndCountsEveryOne) {
  LogCapture log;
  const std::size_t n = 3 * proto::Receiver::kLogBurst;
  for (std::size_t i = 0; i < n; ++i) send_raw(dealer, {"junk"});
  ASSERT_TRUE(proto::send(dealer, good(1), false));
  drain_until(n + 1);
  EXPECT_EQ(dropped, n);
  EXPECT_EQ(pids, std::vector<std::uint32_t>{1});
  const std::vector<std::string> lines = log.lines();
  ASSERT_EQ(lines.size(), proto::Receiver::kLogBurst);
  EXPECT_NE(lines.back().find("the next are counted, not logged"), std::string::npos)
      << lines.back();
  // A receiver of its own logs again (the limit is each receiver's).
  proto::Receiver other{"other", "a dealer"};
  other.drop("", "bad");
  const std::vector<std::string> after = log.lines();
  ASSERT_EQ(after.size(), proto::Receiver::kLogBurst + 1);
  EXPECT_EQ(after.back(), "warning other: dropped a malformed message from a dealer: bad");
}

// --- socket set-up --------------------------------------------------------------------------

TEST(ProtocolSocket, RoutersAndDealersGetTheirOptions) {
  zmq::context_t ctx;
  constexpr std::int64_t kLimit = std::int64_t{5} << 20;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  proto::configure_router(router, proto::Handover::yes, kLimit);
  EXPECT_EQ(router.get(zmq::sockopt::sndhwm), 0);
  EXPECT_EQ(router.get(zmq::sockopt::rcvhwm), 0);
  EXPECT_EQ(router.get(zmq::sockopt::maxmsgsize), kLimit);
  EXPECT_EQ(router.get(zmq::sockopt::linger), 0);

  zmq::socket_t work(ctx, zmq::socket_type::dealer);
  proto::configure_dealer(work, proto::Traffic::work, std::string("E\0id", 4), std::nullopt,
                          proto::kDefaultMaxMessage);
  EXPECT_EQ(work.get(zmq::sockopt::routing_id), std::string("E\0id", 4));
  EXPECT_EQ(work.get(zmq::sockopt::sndhwm), 0);
  EXPECT_EQ(work.get(zmq::sockopt::rcvhwm), 0);
  EXPECT_EQ(work.get(zmq::sockopt::maxmsgsize), proto::kDefaultMaxMessage);
  EXPECT_EQ(work.get(zmq::sockopt::linger), -1);  // ZeroMQ's default: wait until sent
  EXPECT_EQ(work.get(zmq::sockopt::reconnect_ivl_max), 5000);

  zmq::socket_t control(ctx, zmq::socket_type::dealer);
  proto::configure_dealer(control, proto::Traffic::control, {}, 1000, kLimit);
  EXPECT_EQ(control.get(zmq::sockopt::routing_id), "");
  EXPECT_EQ(control.get(zmq::sockopt::sndhwm), 1000);  // ZeroMQ's defaults
  EXPECT_EQ(control.get(zmq::sockopt::rcvhwm), 1000);
  EXPECT_EQ(control.get(zmq::sockopt::maxmsgsize), kLimit);  // every socket has a limit
  EXPECT_EQ(control.get(zmq::sockopt::linger), 1000);
  EXPECT_EQ(control.get(zmq::sockopt::reconnect_ivl_max), 5000);
}

// Without handover (the broker's frontend), a second peer that announces the routing id
// of a connected one does not take its place, nor the messages routed to it.
TEST(ProtocolSocket, WithoutHandoverAPeerCannotTakeOverAConnectedPeersId) {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  proto::configure_router(router, proto::Handover::no, proto::kDefaultMaxMessage);
  arm(router);
  router.bind("inproc://unit-handover");
  auto peer = [&](const std::string& id) {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    arm(s);
    s.set(zmq::sockopt::routing_id, id);
    s.connect("inproc://unit-handover");
    return s;
  };
  auto say = [](zmq::socket_t& s, proto::Cmd cmd) {
    ASSERT_TRUE(proto::send(s, proto::make(cmd, std::vector<int>{}), false));
  };
  zmq::socket_t victim = peer("victim");
  say(victim, proto::Cmd::heartbeat);
  ASSERT_EQ(recv_within(router, true)->peer, "victim");
  zmq::socket_t thief = peer("victim");
  say(thief, proto::Cmd::bye);
  // The router takes connections in the order they were made: once the probe's message
  // is in, the thief's connection has been dealt with.
  zmq::socket_t probe = peer("probe");
  say(probe, proto::Cmd::status);
  while (true) {
    auto m = recv_within(router, true);
    ASSERT_TRUE(m.has_value());
    ASSERT_NE(m->cmd, proto::Cmd::bye) << "the thief's message came in as the victim's";
    if (m->peer == "probe") break;
  }
  ASSERT_TRUE(
      proto::send(router, proto::make(proto::Cmd::welcome, proto::Welcome{}, "victim"), true));
  EXPECT_EQ(recv_within(victim, false)->cmd, proto::Cmd::welcome);
}

TEST(ProtocolSocket, InprocPairWithoutRouting) {
  zmq::context_t ctx;
  zmq::socket_t a(ctx, zmq::socket_type::pair);
  zmq::socket_t b(ctx, zmq::socket_type::pair);
  arm(a);
  arm(b);
  a.bind("inproc://unit-protocol-pair");
  b.connect("inproc://unit-protocol-pair");
  for (std::uint8_t c : {0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15}) {
    proto::Message m = proto::make(static_cast<Cmd>(c), std::vector<std::uint64_t>{c});
    m.frames.emplace_back(std::string_view("e"));
    m.frames.emplace_back(std::string_view("v"));
    ASSERT_TRUE(proto::send(a, std::move(m), false));
    auto got = recv_within(b, false);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(static_cast<std::uint8_t>(got->cmd), c);
    EXPECT_EQ(proto::decode<std::vector<std::uint64_t>>(*got), std::vector<std::uint64_t>{c});
    ASSERT_EQ(got->frames.size(), 2u);
    EXPECT_EQ(bytes(got->frames[0]), "e");
    EXPECT_EQ(bytes(got->frames[1]), "v");
  }
}

}  // namespace
