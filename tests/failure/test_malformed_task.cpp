// A TASK the executor cannot read still gets an answer (issue 11, item 4): otherwise the
// broker's credit for that executor, and the chunks, stay taken for ever. The test plays
// the broker: a ROUTER on an ipc endpoint, with a real worker agent (this binary in its
// `mqpool worker` role, main.cpp) and its executor connected to it, and hand-made TASKs.
#include <zmq.hpp>

#include "common.hpp"
#include "common/protocol.hpp"
#include "mqpool/codec.hpp"

namespace ftest {
namespace {

namespace proto = mqpool::proto;
using mqpool::ErrorCode;

// The worker-facing side of a broker, as far as these tests need it: it echoes
// heartbeats (so that no executor thinks the broker lost) and hands over the messages
// the test waits for.
class FakeBroker {
 public:
  explicit FakeBroker(const TempDir& dir) : endpoint_("ipc://" + dir.file("back")) {
    sock_.set(zmq::sockopt::router_mandatory, true);  // a send to a gone peer throws
    sock_.set(zmq::sockopt::linger, 0);
    sock_.bind(endpoint_);
  }
  const std::string& endpoint() const { return endpoint_; }

  // The next message with command `cmd`, or nothing within `limit`. Messages passed
  // over on the way are noted in seen() and kept for a later await(): a replacement's
  // READY may come in before its agent's EXITED, which the test awaits first.
  std::optional<proto::Message> await(proto::Cmd cmd, std::chrono::milliseconds limit = kPrompt) {
    for (auto k = kept_.begin(); k != kept_.end(); ++k) {
      if (k->cmd != cmd) continue;
      proto::Message m = std::move(*k);
      kept_.erase(k);
      return m;
    }
    const auto deadline = Clock::now() + limit;
    while (true) {
      while (auto m = proto::recv(sock_, true, zmq::recv_flags::dontwait)) {
        if (m->cmd == cmd) return m;
        if (m->cmd == proto::Cmd::heartbeat)
          proto::send(sock_, proto::make(proto::Cmd::heartbeat, std::vector<int>{}, m->peer), true);
        seen_.push_back(m->cmd);
        if (m->cmd != proto::Cmd::heartbeat) kept_.push_back(std::move(*m));
      }
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return std::nullopt;
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::min(left, 100ms));
    }
  }
  // A TASK to `executor` with this header and these argument frames.
  void send_task(const std::string& executor, zmq::message_t header,
                 const std::vector<std::string>& frames) {
    proto::Message m{executor, proto::Cmd::task, std::move(header), {}};
    for (const std::string& f : frames) m.frames.emplace_back(f.data(), f.size());
    ASSERT_TRUE(proto::send(sock_, std::move(m), true)) << "the executor is unreachable";
  }
  void send_task(const std::string& executor, const std::vector<proto::TaskSpec>& specs,
                 const std::vector<std::string>& frames) {
    send_task(executor, proto::encode(specs), frames);
  }
  bool saw(proto::Cmd cmd) const {
    return std::find(seen_.begin(), seen_.end(), cmd) != seen_.end();
  }

 private:
  std::string endpoint_;
  zmq::context_t ctx_{1};
  zmq::socket_t sock_{ctx_, zmq::socket_type::router};
  std::vector<proto::Cmd> seen_;
  std::vector<proto::Message> kept_;
};

// An executor as its READY names it.
struct Joined {
  std::string peer;
  pid_t pid = 0;
};

std::optional<Joined> await_executor(FakeBroker& broker) {
  auto m = broker.await(proto::Cmd::ready, kLong);
  if (!m) return std::nullopt;
  return Joined{m->peer, static_cast<pid_t>(proto::decode<proto::Ready>(*m).pid)};
}

// One chunk's outcomes from a DONE: its error rows and its values.
struct Outcomes {
  std::vector<std::pair<std::uint32_t, mqpool::WireError>> errors;
  std::vector<msgpack::object_handle> values;
};

// The DONE for the TASK just sent: its chunk ids and each chunk's outcomes (`counts[i]`
// values in chunk i). Fails the test and returns nothing if none comes within kPrompt.
std::optional<std::pair<std::vector<std::uint64_t>, std::vector<Outcomes>>> await_done(
    FakeBroker& broker, const std::vector<std::uint32_t>& counts, const char* what) {
  auto m = broker.await(proto::Cmd::done);
  if (!m) {
    ADD_FAILURE() << "no DONE within " << kPrompt.count() << " ms for " << what;
    return std::nullopt;
  }
  auto ids = proto::decode<std::vector<std::uint64_t>>(*m);
  EXPECT_EQ(m->frames.size(), 2 * ids.size()) << what;
  if (ids.size() != counts.size() || m->frames.size() != 2 * ids.size()) return std::nullopt;
  std::vector<Outcomes> out(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    out[i].errors = proto::decode_errors(m->frames[2 * i]);
    mqpool::detail::Reader values(m->frames[2 * i + 1].data(), m->frames[2 * i + 1].size());
    for (std::uint32_t k = 0; k < counts[i]; ++k)
      out[i].values.push_back(msgpack::clone(values.next()));
  }
  return std::pair{ids, std::move(out)};
}

// Every task of the chunk failed with SerializationError, its message containing `text`.
void expect_all_serialization(const Outcomes& o, std::uint32_t count, const std::string& text) {
  ASSERT_EQ(o.errors.size(), count);
  for (std::uint32_t k = 0; k < count; ++k) {
    EXPECT_EQ(o.errors[k].first, k);
    EXPECT_EQ(o.errors[k].second.code, ErrorCode::serialization) << o.errors[k].second.message;
    EXPECT_NE(o.errors[k].second.message.find(text), std::string::npos)
        << o.errors[k].second.message;
    EXPECT_TRUE(o.values[k].get().is_nil());
  }
}

// msgpack bytes of one task's argument tuple (ms) for "failure.nap".
std::string nap_args(std::int64_t ms) {
  msgpack::sbuffer b;
  msgpack::pack(b, std::tuple<std::int64_t>{ms});
  return std::string(b.data(), b.size());
}

// A well-formed TASK runs and is answered: the executor still takes work.
void expect_a_good_task_runs(FakeBroker& broker, const Joined& e, std::uint64_t chunk) {
  broker.send_task(e.peer, {{chunk, 2, "failure.nap"}}, {nap_args(3) + nap_args(4)});
  auto done = await_done(broker, {2}, "a well-formed TASK");
  ASSERT_TRUE(done);
  EXPECT_EQ(done->first, std::vector<std::uint64_t>{chunk});
  EXPECT_TRUE(done->second[0].errors.empty());
  EXPECT_EQ(done->second[0].values[0].get().as<std::int64_t>(), 3);
  EXPECT_EQ(done->second[0].values[1].get().as<std::int64_t>(), 4);
}

// Kills the agent and waits until its executors are gone too (their parent-death signal).
void stop_worker(Scenario& worker, const std::vector<pid_t>& executors) {
  worker.kill();
  for (pid_t p : executors)
    EXPECT_TRUE(eventually([&] { return !process_exists(p); }, kPrompt))
        << "executor " << p << " outlived its agent";
}

TEST(MalformedTask, WrongFrameCountsAndGarbageArgumentsFailTheirChunksAndTheExecutorGoesOn) {
  TempDir dir;
  FakeBroker broker(dir);
  Scenario worker("worker", dir.path(), {"--connect", broker.endpoint(), "--processes", "1"});
  const auto e = await_executor(broker);
  ASSERT_TRUE(e) << "no executor said READY";

  // Two chunks, one argument frame: which frame is whose cannot be known.
  broker.send_task(e->peer, {{101, 2, "failure.nap"}, {102, 1, "failure.nap"}},
                   {nap_args(1) + nap_args(1)});
  if (auto done = await_done(broker, {2, 1}, "a TASK with a frame missing")) {
    EXPECT_EQ(done->first, (std::vector<std::uint64_t>{101, 102}));
    expect_all_serialization(done->second[0], 2, "2 chunks but 1 argument frame");
    expect_all_serialization(done->second[1], 1, "2 chunks but 1 argument frame");
  }
  // One chunk, two frames.
  broker.send_task(e->peer, {{103, 1, "failure.nap"}}, {nap_args(1), nap_args(1)});
  if (auto done = await_done(broker, {1}, "a TASK with an extra frame")) {
    EXPECT_EQ(done->first, std::vector<std::uint64_t>{103});
    expect_all_serialization(done->second[0], 1, "1 chunk but 2 argument frames");
  }
  // Arguments that stop decoding at the second task (0xc1 is never valid msgpack): the
  // first task runs, the second fails.
  broker.send_task(e->peer, {{104, 2, "failure.nap"}}, {nap_args(5) + "\xc1"});
  if (auto done = await_done(broker, {2}, "a TASK whose arguments do not decode")) {
    EXPECT_EQ(done->first, std::vector<std::uint64_t>{104});
    const Outcomes& o = done->second[0];
    ASSERT_EQ(o.errors.size(), 1u);
    EXPECT_EQ(o.errors[0].first, 1u);
    EXPECT_EQ(o.errors[0].second.code, ErrorCode::serialization) << o.errors[0].second.message;
    EXPECT_EQ(o.values[0].get().as<std::int64_t>(), 5);
    EXPECT_TRUE(o.values[1].get().is_nil());
  }
  expect_a_good_task_runs(broker, *e, 105);
  EXPECT_FALSE(broker.saw(proto::Cmd::exited)) << "the executor left";
  stop_worker(worker, {e->pid});
}

// A header that does not decode names no chunk the executor could answer for. It
// leaves with a planned exit instead: its agent reports that (so the broker hands the
// chunks back uncharged), a new executor joins, and the new one takes work.
TEST(MalformedTask, AnUnreadableHeaderEndsTheExecutorAsAPlannedExit) {
  TempDir dir;
  FakeBroker broker(dir);
  const std::string err = dir.file("worker.err");
  Scenario worker("worker", dir.path(), {"--connect", broker.endpoint(), "--processes", "1"}, err);
  const auto e = await_executor(broker);
  ASSERT_TRUE(e) << "no executor said READY";

  // An array of one spec whose count is a string: the chunk id 106 is readable on its
  // own, but a header that does not decode is not trusted to name anything.
  msgpack::sbuffer b;
  msgpack::pack(b, std::vector<std::tuple<std::uint64_t, std::string, std::string>>{
                       {106, "two", "failure.nap"}});
  broker.send_task(e->peer, zmq::message_t(b.data(), b.size()), {nap_args(1)});
  auto exited = broker.await(proto::Cmd::exited);
  ASSERT_TRUE(exited) << "the executor neither answered nor left";
  const auto x = proto::decode<proto::Exited>(*exited);
  EXPECT_EQ(static_cast<pid_t>(x.pid), e->pid);
  EXPECT_TRUE(x.planned) << x.reason;
  EXPECT_EQ(x.reason, "exited with code 75");
  EXPECT_FALSE(broker.saw(proto::Cmd::done)) << "a DONE for an unreadable TASK";

  const auto next = await_executor(broker);
  ASSERT_TRUE(next) << "no replacement executor";
  EXPECT_NE(next->pid, e->pid);
  expect_a_good_task_runs(broker, *next, 107);
  EXPECT_FALSE(broker.saw(proto::Cmd::done)) << "a DONE for an unreadable TASK";
  EXPECT_NE(read_file(err).find("cannot read a TASK"), std::string::npos) << read_file(err);
  stop_worker(worker, {e->pid, next->pid});
}

}  // namespace
}  // namespace ftest
