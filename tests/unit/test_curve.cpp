// CURVE's pieces without a broker (docs/SECURITY.md): key files, the authorized-keys
// directory, the ZAP answers, and which endpoints count as loopback.
#include <gtest/gtest.h>
#include <zmq.h>

#include <array>
#include <filesystem>
#include <fstream>

#include "broker/zap.hpp"
#include "common/curve.hpp"
#include "common/endpoint.hpp"

namespace {

namespace fs = std::filesystem;
using mqpool::broker::KeyRing;

struct Pair {
  std::string pub, secret;  // Z85
};
Pair new_pair() {
  std::array<char, 41> pub{}, sec{};
  EXPECT_EQ(zmq_curve_keypair(pub.data(), sec.data()), 0);
  return {pub.data(), sec.data()};
}
std::string binary(const std::string& z85) {
  std::array<std::uint8_t, 32> bin{};
  zmq_z85_decode(bin.data(), z85.c_str());
  return {reinterpret_cast<const char*>(bin.data()), bin.size()};
}

class CurveFiles : public testing::Test {
 protected:
  void SetUp() override {
    path_ = fs::temp_directory_path() / ("mqpool-unit-curve-" + std::to_string(getpid()));
    fs::create_directories(path_);
  }
  void TearDown() override { fs::remove_all(path_); }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(path_ / name) << text;
    return (path_ / name).string();
  }
  fs::path path_;
};

TEST_F(CurveFiles, AKeyFileHoldsOneZ85KeyAndAnythingElseIsRefusedByName) {
  const Pair p = new_pair();
  EXPECT_EQ(mqpool::detail::read_key(write("a.pub", p.pub + "\n"), "--broker-key"), p.pub);
  EXPECT_EQ(mqpool::detail::public_key_of(p.secret), p.pub);
  try {
    mqpool::detail::read_key(write("junk.pub", "hello\n"), "--broker-key");
    ADD_FAILURE() << "a junk key was read";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--broker-key"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("junk.pub: not a CurveZMQ key"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(mqpool::detail::read_key((path_ / "missing").string(), "x"), std::invalid_argument);
  EXPECT_FALSE(mqpool::detail::is_key(p.pub.substr(1)));
}

TEST_F(CurveFiles, TheKeyRingAdmitsExactlyThePubFilesOfItsDirectoriesAsLastRead) {
  using mqpool::broker::Role;
  const Pair alice = new_pair(), bob = new_pair(), mallory = new_pair(), carol = new_pair(),
             wendy = new_pair();
  write("alice.pub", alice.pub + "\n");
  write("bob.pub", bob.pub);
  write("mallory.key", mallory.pub);  // not a .pub: not read
  write("broken.pub", "nope");
  fs::create_directories(path_ / "clients");
  fs::create_directories(path_ / "workers");
  write("clients/carol.pub", carol.pub);
  write("workers/wendy.pub", wendy.pub);
  KeyRing ring(path_.string());
  const KeyRing::Loaded loaded = ring.load();
  EXPECT_EQ(loaded.keys, 4u);
  ASSERT_EQ(loaded.skipped.size(), 1u);
  EXPECT_NE(loaded.skipped[0].find("broken.pub"), std::string::npos) << loaded.skipped[0];
  for (Role role : {Role::client, Role::worker}) {
    EXPECT_TRUE(ring.admits(binary(alice.pub), role));  // DIR itself: both endpoints
    EXPECT_TRUE(ring.admits(binary(bob.pub), role));
    EXPECT_FALSE(ring.admits(binary(mallory.pub), role));
  }
  EXPECT_TRUE(ring.admits(binary(carol.pub), Role::client));   // a client's key cannot
  EXPECT_FALSE(ring.admits(binary(carol.pub), Role::worker));  // take tasks as a worker
  EXPECT_TRUE(ring.admits(binary(wendy.pub), Role::worker));
  EXPECT_FALSE(ring.admits(binary(wendy.pub), Role::client));

  fs::remove(path_ / "bob.pub");  // revoked: refused from the next load on
  fs::remove(path_ / "clients" / "carol.pub");
  ring.load();
  EXPECT_FALSE(ring.admits(binary(bob.pub), Role::client));
  EXPECT_FALSE(ring.admits(binary(carol.pub), Role::client));
  EXPECT_TRUE(ring.admits(binary(alice.pub), Role::client));

  fs::remove_all(path_);  // an unreadable directory admits nobody, and says so
  EXPECT_THROW(ring.load(), std::runtime_error);
  EXPECT_FALSE(ring.admits(binary(alice.pub), Role::client));
  EXPECT_FALSE(ring.admits(binary(wendy.pub), Role::worker));
}

TEST_F(CurveFiles, ZapAnswers200OnlyForAKeyAdmittedOnTheEndpointItCameTo) {
  const Pair alice = new_pair(), mallory = new_pair(), wendy = new_pair();
  write("alice.pub", alice.pub);
  fs::create_directories(path_ / "workers");
  write("workers/wendy.pub", wendy.pub);
  KeyRing ring(path_.string());
  ring.load();
  auto request = [](std::string_view domain, const std::string& mechanism,
                    std::vector<std::string> credentials) {
    std::vector<std::string> r = {"1.0", "id7", std::string(domain), "10.0.0.9", "", mechanism};
    r.insert(r.end(), credentials.begin(), credentials.end());
    return r;
  };
  const auto clients = mqpool::broker::kClientDomain;
  const auto workers = mqpool::broker::kWorkerDomain;
  std::string who;
  auto ok = mqpool::broker::zap_reply(request(clients, "CURVE", {binary(alice.pub)}), ring, who);
  ASSERT_EQ(ok.size(), 6u);
  EXPECT_EQ(ok[1], "id7");
  EXPECT_EQ(ok[2], "200");
  EXPECT_EQ(ok[4], alice.pub);  // the user id: the peer's key
  auto code = [&](std::vector<std::string> r) {
    return mqpool::broker::zap_reply(r, ring, who)[2];
  };
  EXPECT_EQ(code(request(workers, "CURVE", {binary(wendy.pub)})), "200");
  EXPECT_EQ(code(request(clients, "CURVE", {binary(wendy.pub)})), "400");
  EXPECT_NE(who.find("client endpoint"), std::string::npos) << who;
  EXPECT_EQ(code(request(clients, "CURVE", {binary(mallory.pub)})), "400");
  EXPECT_NE(who.find(mallory.pub), std::string::npos) << who;
  EXPECT_NE(who.find("10.0.0.9"), std::string::npos) << who;
  EXPECT_EQ(code(request(clients, "NULL", {})), "400");
  EXPECT_EQ(code(request(clients, "CURVE", {"short"})), "400");
  EXPECT_EQ(code(request("elsewhere", "CURVE", {binary(alice.pub)})), "500");
  EXPECT_EQ(code({"2.0", "x", std::string(clients), "", "", "CURVE"}), "500");
  EXPECT_EQ(code({}), "500");
}

TEST(Endpoint, OnlyIpcInprocAndLoopbackTcpCountAsThisHostOnly) {
  for (const char* ep : {"ipc:///tmp/x", "inproc://a", "tcp://127.0.0.1:5555", "tcp://127.3.2.1:*",
                         "tcp://localhost:5555", "tcp://[::1]:5555", "tcp://lo:5555"})
    EXPECT_TRUE(mqpool::detail::is_loopback(ep)) << ep;
  for (const char* ep : {"tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://10.0.0.1:5555",
                         "tcp://eth0:5555", "tcp://[::]:5555", "tcp://broker:5555"})
    EXPECT_FALSE(mqpool::detail::is_loopback(ep)) << ep;
}

}  // namespace
