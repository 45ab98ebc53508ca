// CURVE on a cluster (docs/SECURITY.md): a broker started with a secret key and a
// directory of authorized keys admits only those keys, on both endpoints; everyone else
// gets a clear error at once (never the connect timeout), and no task of theirs runs.
// The broker and worker are this binary in their roles (main.cpp), over ipc.
#include <zmq.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <mqpool/cluster.hpp>
#include <mqpool/mqpool.hpp>

#include "common.hpp"

namespace ftest {
namespace {

using namespace std::chrono_literals;

struct KeyPair {
  std::string secret_file, public_file;
};

// A key pair in the files `mqpool keygen` writes (the CLI's tests check keygen itself).
KeyPair make_keys(const TempDir& dir, const std::string& name) {
  std::array<char, 41> pub{}, sec{};
  if (zmq_curve_keypair(pub.data(), sec.data()) != 0) throw std::runtime_error("no CURVE");
  KeyPair k{dir.file(name + ".key"), dir.file(name + ".pub")};
  std::ofstream(k.secret_file) << sec.data() << '\n';
  std::ofstream(k.public_file) << pub.data() << '\n';
  return k;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

class CurveCluster {
 public:
  explicit CurveCluster(const TempDir& dir)
      : dir_(dir),
        broker_(make_keys(dir, "broker")),
        alice_(make_keys(dir, "alice")),
        mallory_(make_keys(dir, "mallory")),
        worker_keys_(make_keys(dir, "worker")),
        authorized_(subdir(dir, "authorized")) {
    admit(alice_);
    admit(worker_keys_);
    start_broker();
  }
  void start_broker() {
    broker_process_ = std::make_unique<Scenario>(
        "broker", dir_.path(), std::vector<std::string>{broker_.secret_file, authorized_},
        dir_.file("broker.err"));
  }
  void admit(const KeyPair& k) {
    std::filesystem::copy_file(
        k.public_file,
        authorized_ + "/" + std::filesystem::path(k.public_file).filename().string());
  }
  void revoke(const KeyPair& k) {
    std::filesystem::remove(authorized_ + "/" +
                            std::filesystem::path(k.public_file).filename().string());
  }
  std::string front() const { return "ipc://" + dir_.file("front"); }
  std::string back() const { return "ipc://" + dir_.file("back"); }
  mqpool::PoolOptions options(const KeyPair& k) const {
    mqpool::PoolOptions o{.connect = front(),
                          .heartbeat_interval = 200ms,
                          .heartbeat_liveness = 3,
                          .connect_timeout = kLong};
    o.curve_secret_file = k.secret_file;
    o.broker_key_file = broker_.public_file;
    return o;
  }
  std::unique_ptr<Scenario> worker(const KeyPair& k, const std::string& err = {}) const {
    return std::make_unique<Scenario>(
        "worker", dir_.path(),
        std::vector<std::string>{"--connect", back(), "--processes", "1", "--curve-secret",
                                 k.secret_file, "--broker-key", broker_.public_file},
        err);
  }
  // The broker's status as an admitted client sees it.
  mqpool::BrokerStatus status() const {
    return mqpool::broker_status(front(), kPrompt, alice_.secret_file, broker_.public_file);
  }
  Scenario& broker() { return *broker_process_; }
  const KeyPair& broker_keys() const { return broker_; }
  const KeyPair& alice() const { return alice_; }
  const KeyPair& mallory() const { return mallory_; }
  const KeyPair& worker_keys() const { return worker_keys_; }

 private:
  const TempDir& dir_;
  KeyPair broker_, alice_, mallory_, worker_keys_;
  std::string authorized_;
  std::unique_ptr<Scenario> broker_process_;
};

// The ConnectionError a pool's constructor throws with `o`, and how long it took; fails
// the test if the pool connects.
std::pair<std::string, std::chrono::milliseconds> refusal(const mqpool::PoolOptions& o) {
  std::string what;
  const auto took = elapsed([&] {
    try {
      mqpool::Pool pool(o);
      ADD_FAILURE() << "the broker admitted the pool";
    } catch (const mqpool::ConnectionError& e) {
      what = e.what();
    }
  });
  return {what, took};
}

const std::vector<std::int64_t> kNaps{0, 1, 2, 3};

TEST(Curve, AnAdmittedClientAndWorkerRunTasks) {
  TempDir dir;
  CurveCluster c(dir);
  auto worker = c.worker(c.worker_keys());
  mqpool::Pool pool(c.options(c.alice()));
  EXPECT_EQ(bounded(kLong, "map", [&] { return pool.map(nap, kNaps); }), kNaps);
}

TEST(Curve, AClientWithAnUnknownKeyGetsConnectionErrorAtOnceAndIsNeverAClient) {
  TempDir dir;
  CurveCluster c(dir);
  auto worker = c.worker(c.worker_keys());
  const auto [what, took] =
      bounded(kLong, "refused pool", [&] { return refusal(c.options(c.mallory())); });
  EXPECT_TRUE(contains(what, "the broker refused this key")) << what;
  EXPECT_LT(took, kPrompt) << "found only by the connect timeout (" << kLong.count() << " ms)";
  const mqpool::BrokerStatus s = c.status();  // a STATUS question makes no client
  EXPECT_TRUE(s.clients.empty());
  EXPECT_EQ(s.done, 0u);
}

TEST(Curve, AWrongBrokerKeyOrNoKeysAtAllFailAtOnce) {
  TempDir dir;
  CurveCluster c(dir);
  mqpool::PoolOptions wrong = c.options(c.alice());
  wrong.broker_key_file = c.alice().public_file;  // not the broker's
  const auto [what, took] = bounded(kLong, "wrong broker key", [&] { return refusal(wrong); });
  EXPECT_TRUE(contains(what, "the broker refused this key")) << what;
  EXPECT_TRUE(contains(what, "broker key")) << what;
  EXPECT_LT(took, kPrompt);

  mqpool::PoolOptions plain = c.options(c.alice());
  plain.curve_secret_file.clear();
  plain.broker_key_file.clear();
  const auto [plain_what, plain_took] = bounded(kLong, "no keys", [&] { return refusal(plain); });
  EXPECT_TRUE(contains(plain_what, "CURVE")) << plain_what;
  EXPECT_LT(plain_took, kPrompt);
}

TEST(Curve, AWorkerWithAnUnknownKeyExitsWithAClearErrorAndGetsNoTask) {
  TempDir dir;
  CurveCluster c(dir);
  auto worker = c.worker(c.mallory(), dir.file("mallory.err"));
  const auto status = worker->wait_for(kPrompt);
  ASSERT_TRUE(status.has_value()) << "a refused worker kept running";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1);
  const std::string err = read_file(dir.file("mallory.err"));
  EXPECT_TRUE(contains(err, "the broker refused this key")) << err;
  EXPECT_TRUE(c.status().workers.empty());
}

// A key removed from the directory is refused from the next connection on, once the
// broker has read it again (SIGHUP); a key added is admitted. Connections made before
// stay: admission is decided at each connection's handshake.
TEST(Curve, SighupRereadsTheKeysRemovedOnesAreRefusedAddedOnesAdmitted) {
  TempDir dir;
  CurveCluster c(dir);
  auto worker = c.worker(c.worker_keys());
  mqpool::Pool before(c.options(c.alice()));
  c.revoke(c.alice());
  c.admit(c.mallory());
  c.broker().signal(SIGHUP);
  EXPECT_TRUE(eventually([&] {
    mqpool::PoolOptions o = c.options(c.alice());
    o.connect_timeout = kPrompt;
    return contains(refusal(o).first, "the broker refused this key");
  }));
  mqpool::Pool mallory(c.options(c.mallory()));
  EXPECT_EQ(bounded(kLong, "mallory's map", [&] { return mallory.map(nap, kNaps); }), kNaps);
  EXPECT_EQ(bounded(kLong, "the earlier pool's map", [&] { return before.map(nap, kNaps); }),
            kNaps);
}

// A client admitted, then revoked, then cut off (the broker restarts): its tasks fail at
// once with the refusal, not after PoolOptions::reconnect_timeout.
TEST(Curve, ARevokedClientsTasksFailWithTheRefusalWhenItReconnects) {
  TempDir dir;
  CurveCluster c(dir);
  auto worker = c.worker(c.worker_keys());
  mqpool::PoolOptions o = c.options(c.alice());
  o.reconnect_timeout = 10min;
  mqpool::Pool pool(o);
  OpenOnExit gate(dir.file("gate"));
  auto r = pool.apply_async(pid_then_wait, dir.file("p0"), dir.file("gate"), std::int64_t{60000});
  ASSERT_TRUE(await_pid_pair(dir.file("p0")));
  c.revoke(c.alice());
  c.broker().kill();
  c.start_broker();
  try {
    bounded(kLong, "the revoked task", [&] { return r.get(kLong); });
    ADD_FAILURE() << "a revoked client's task succeeded";
  } catch (const mqpool::ConnectionError& e) {
    EXPECT_TRUE(contains(e.what(), "the broker refused this key")) << e.what();
  }
  EXPECT_THROW(pool.apply(nap, std::int64_t{0}), mqpool::ConnectionError);
}

TEST(Curve, KeyFilesAreCheckedBeforeAnythingConnects) {
  TempDir dir;
  const KeyPair k = make_keys(dir, "k");
  std::ofstream(dir.file("junk.key")) << "not a key\n";
  auto invalid = [](const mqpool::PoolOptions& o) {
    try {
      mqpool::Pool pool(o);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no invalid_argument)");
  };
  mqpool::PoolOptions local;
  local.curve_secret_file = k.secret_file;
  local.broker_key_file = k.public_file;
  EXPECT_TRUE(contains(invalid(local), "cluster pool")) << invalid(local);
  mqpool::PoolOptions one{.connect = "ipc://" + dir.file("none")};
  one.curve_secret_file = k.secret_file;
  EXPECT_TRUE(contains(invalid(one), "PoolOptions::broker_key_file")) << invalid(one);
  mqpool::PoolOptions junk = one;
  junk.broker_key_file = dir.file("junk.key");
  EXPECT_TRUE(contains(invalid(junk), "junk.key: not a CurveZMQ key")) << invalid(junk);
  mqpool::PoolOptions missing = one;
  missing.broker_key_file = dir.file("missing.pub");
  EXPECT_TRUE(contains(invalid(missing), "missing.pub: No such file")) << invalid(missing);
}

}  // namespace
}  // namespace ftest
