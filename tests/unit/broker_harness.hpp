// Drives a BrokerCore as its sockets would, with an injected clock: builds client,
// executor and agent messages, and decodes what the core asks to send.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "broker/core.hpp"
#include "common/protocol.hpp"

namespace unit_broker {

namespace proto = mqpool::proto;
using mqpool::broker::BrokerCore;
using mqpool::broker::Side;
using mqpool::broker::TimePoint;
using proto::Cmd;
using std::chrono::milliseconds;

inline std::string bytes(const zmq::message_t& m) { return std::string(m.data<char>(), m.size()); }

// The argument stream of a chunk: `count` one-int tuples first, first+1, ...
inline std::string int_args(int first, std::uint32_t count = 1) {
  mqpool::detail::Buffer buf;
  mqpool::detail::Packer packer(buf);
  for (std::uint32_t i = 0; i < count; ++i)
    packer.pack(std::make_tuple(first + static_cast<int>(i)));
  return std::string(buf.data(), buf.size());
}

inline proto::ChunkSpec chunk(std::uint64_t seq, std::uint32_t count = 1,
                              std::uint32_t timeout_ms = 0, std::uint32_t max_retries = 3,
                              std::string fn = "fn") {
  return proto::ChunkSpec{0, seq, count, std::move(fn), timeout_ms, max_retries};
}

// One message the core asked to send, with its header decoded by command.
struct Sent {
  Side side{};
  std::string peer;
  Cmd cmd{};
  std::vector<proto::TaskSpec> tasks;      // TASK
  std::vector<proto::ResultSpec> results;  // RESULT
  std::uint32_t kill_pid = 0;              // KILL
  std::vector<zmq::message_t> frames;
};

inline std::string exec(std::uint64_t agent, std::uint32_t pid) {
  return proto::executor_id(agent, pid);
}

class Harness {
 public:
  BrokerCore core;
  TimePoint now = TimePoint{} + std::chrono::hours(1);

  // An agent says hello, announcing `tasks` (the default task "fn" unless told).
  void hello(std::uint64_t agent, std::vector<std::string> tasks = {"fn"}) {
    core.on_worker(proto::make(Cmd::agent_hello,
                               proto::AgentHello{agent, 1, "host", std::move(tasks), 1, 1000, 3},
                               proto::agent_id(agent)),
                   now);
    expect_welcome(proto::agent_id(agent));
  }
  // A client says hello (as a cluster client does before it submits).
  // `remember` false: submit() will not know it greeted (for tests of many clients).
  void greet(const std::string& client, std::uint32_t heartbeat_ms = 1000, bool remember = true) {
    core.on_client(proto::make(Cmd::hello, proto::Hello{7, client, heartbeat_ms, 3}, client), now);
    expect_welcome(client);
    if (remember) greeted_.push_back(client);
  }
  // The greeting's WELCOME is checked and consumed; what was queued before it stays
  // for take().
  void expect_welcome(const std::string& peer) {
    auto out = core.take_outbox();
    ASSERT_FALSE(out.empty());
    EXPECT_EQ(out.back().msg.cmd, Cmd::welcome);
    EXPECT_EQ(out.back().msg.peer, peer);
    out.pop_back();
    for (auto& o : out) held_.push_back(std::move(o));
  }
  // An executor joins; its routing id is executor_id(agent, pid), as the real one's is.
  void ready(std::uint64_t agent, std::uint32_t pid, std::uint32_t credit = 1,
             std::uint32_t max_bundle = 0) {
    core.on_worker(proto::make(Cmd::ready, proto::Ready{agent, pid, "host", credit, max_bundle},
                               exec(agent, pid)),
                   now);
  }
  // Submits from `client`, greeting it first if it has not said hello yet.
  void submit(const std::string& client, std::vector<proto::ChunkSpec> specs,
              const std::vector<std::string>& args) {
    if (std::find(greeted_.begin(), greeted_.end(), client) == greeted_.end()) greet(client);
    proto::Message m = proto::make(Cmd::submit, specs, client);
    for (const auto& a : args) m.frames.emplace_back(a.data(), a.size());
    core.on_client(std::move(m), now);
  }
  // `n` single-task chunks seq first.. with args int_args(seq).
  void submit_singles(const std::string& client, std::uint64_t first, std::uint32_t n,
                      std::uint32_t timeout_ms = 0, std::uint32_t max_retries = 3) {
    std::vector<proto::ChunkSpec> specs;
    std::vector<std::string> args;
    for (std::uint64_t s = first; s < first + n; ++s) {
      specs.push_back(chunk(s, 1, timeout_ms, max_retries));
      args.push_back(int_args(static_cast<int>(s)));
    }
    submit(client, std::move(specs), args);
  }
  void cancel(const std::string& client) {
    if (std::find(greeted_.begin(), greeted_.end(), client) == greeted_.end()) greet(client);
    core.on_client(proto::make(Cmd::cancel, std::vector<int>{}, client), now);
  }
  void exited(std::uint64_t agent, std::uint32_t pid, std::string reason, bool planned = false) {
    core.on_worker(proto::make(Cmd::exited, proto::Exited{pid, std::move(reason), planned},
                               proto::agent_id(agent)),
                   now);
  }
  // DONE from `peer` for `ids`, with (errors, values) frames per chunk.
  void done(const std::string& peer, const std::vector<std::uint64_t>& ids,
            const std::vector<std::pair<std::string, std::string>>& outcomes) {
    proto::Message m = proto::make(Cmd::done, ids, peer);
    for (const auto& [errors, values] : outcomes) {
      m.frames.emplace_back(errors.data(), errors.size());
      m.frames.emplace_back(values.data(), values.size());
    }
    core.on_worker(std::move(m), now);
  }
  // DONE for every chunk of a TASK message: no errors, a "v<chunk id>" values frame.
  void answer(const Sent& task) {
    std::vector<std::uint64_t> ids;
    std::vector<std::pair<std::string, std::string>> outcomes;
    for (const auto& t : task.tasks) {
      ids.push_back(t.chunk);
      // Appended, not `"v" + to_string(...)`: GCC 12 at -O3 warns of a false -Wrestrict
      // in that operator+ (GCC bug 105329).
      std::string value = "v";
      value += std::to_string(t.chunk);
      outcomes.emplace_back("", std::move(value));
    }
    done(task.peer, ids, outcomes);
  }
  void tick() { core.on_tick(now); }
  // Teaches the broker that the default task takes `per_task` (one chunk answered after
  // that long, by a helper executor that then leaves).
  void teach(std::chrono::microseconds per_task) {
    ready(99, 9999);
    submit_singles("teacher", std::uint64_t{1} << 40, 1);
    auto sent = take();
    now += per_task;
    answer(sent.at(0));
    exited(99, 9999, "done", true);
    (void)take();
  }
  // The broker bundles only tasks it has measured as cheap: teach it that the default
  // task is (10 us).
  void teach_cheap() { teach(std::chrono::microseconds(10)); }

  std::vector<std::string> greeted_;
  std::vector<mqpool::broker::Outgoing> held_;  // queued before a greeting's WELCOME

  std::vector<Sent> take() {
    std::vector<Sent> out;
    std::vector<mqpool::broker::Outgoing> all;
    all.swap(held_);
    for (auto& o : core.take_outbox()) all.push_back(std::move(o));
    for (auto& o : all) {
      Sent s;
      s.side = o.side;
      s.peer = o.msg.peer;
      s.cmd = o.msg.cmd;
      switch (o.msg.cmd) {
        case Cmd::task:
          s.tasks = proto::decode<std::vector<proto::TaskSpec>>(o.msg);
          break;
        case Cmd::result:
          s.results = proto::decode<std::vector<proto::ResultSpec>>(o.msg);
          break;
        case Cmd::kill:
          s.kill_pid = proto::decode<proto::Kill>(o.msg).pid;
          break;
        case Cmd::welcome:
        case Cmd::reset:
        case Cmd::heartbeat:
        case Cmd::bye:
        case Cmd::refused:
        case Cmd::status:
          break;
        default:
          ADD_FAILURE() << "the broker sent command " << int(o.msg.cmd);
      }
      s.frames = std::move(o.msg.frames);
      out.push_back(std::move(s));
    }
    return out;
  }
};

// The messages of `sent` with command `cmd`: pointers into `sent`, or, for a temporary
// such as only(h.take(), ...), the messages themselves (pointers would dangle).
inline std::vector<const Sent*> only(const std::vector<Sent>& sent, Cmd cmd) {
  std::vector<const Sent*> out;
  for (const auto& s : sent)
    if (s.cmd == cmd) out.push_back(&s);
  return out;
}
inline std::vector<Sent> only(std::vector<Sent>&& sent, Cmd cmd) {
  std::vector<Sent> out;
  for (auto& s : sent)
    if (s.cmd == cmd) out.push_back(std::move(s));
  return out;
}

}  // namespace unit_broker
