// BrokerCore's peers: who is connected (clients, agents, executors), who is still
// alive (heartbeats, expiry), who is on the wrong endpoint, and the status report.
// Dispatch, results and failures are in core.cpp.
#include <algorithm>
#include <array>
#include <cstring>

#include "broker/core.hpp"

namespace mqpool::broker {

// A peer's silence window, as its greeting declares it, but never longer than
// kMaxSilence: a peer that declares hours cannot hold its chunks (or its place) that long.
Clock::duration silence_window(std::uint32_t heartbeat_ms, std::uint32_t liveness) {
  // In milliseconds as integers first: two 32-bit factors overflow nanoseconds.
  const std::uint64_t declared = std::uint64_t{std::max(heartbeat_ms, 1u)} * std::max(liveness, 1u);
  const auto cap = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(kMaxSilence).count());
  return std::chrono::milliseconds(std::min(declared, cap));
}

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The clock's second that `t` falls in: the index of status's tasks/s buckets.
std::int64_t whole_seconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

const char* const kWrongFrontend =
    "this is a broker's client endpoint (mqpool broker --frontend); workers connect to its "
    "worker endpoint (--backend)";
const char* const kWrongBackend =
    "this is a broker's worker endpoint (mqpool broker --backend); clients connect to its "
    "client endpoint (--frontend)";

}  // namespace

void BrokerCore::add_local_client(const std::string& peer, TimePoint now) {
  Client& c = clients_[peer];
  c.id = peer;
  c.name = "local";
  c.since = c.last_seen = now;
  c.expiry = Clock::duration::zero();
}

// A client (re)joins. One that the broker already knows says hello again only when it
// has lost track of the broker (silence, RESET): it resubmits every task without an
// outcome, so what the broker still holds of it is dropped first.
void BrokerCore::on_hello(const std::string& peer, const proto::Hello& h, TimePoint now) {
  if (clients_.count(peer) != 0) cancel_client(peer);
  Client& c = clients_[peer];
  c.id = peer;
  c.name = h.name;
  c.since = now;
  c.expiry = silence_window(h.heartbeat_ms, h.liveness);
  seen(peer, now);
  outbox_.push_back(
      {Side::client,
       proto::make(proto::Cmd::welcome,
                   proto::Welcome{id_, static_cast<std::uint32_t>(executors_.size())}, peer)});
}

// The client, if the broker knows it (and it is alive now); otherwise it is told to say
// hello again (it may have been dropped for silence, or this broker restarted).
BrokerCore::Client* BrokerCore::known_client(const std::string& peer, TimePoint now) {
  auto it = clients_.find(peer);
  if (it == clients_.end()) {
    outbox_.push_back({Side::client, proto::make(proto::Cmd::reset, std::vector<int>{}, peer)});
    return nullptr;
  }
  if (it->second.expiry != Clock::duration::zero()) seen(peer, now);
  return &it->second;
}

void BrokerCore::drop_client(const std::string& peer) {
  cancel_client(peer);
  auto it = clients_.find(peer);
  if (it == clients_.end()) return;
  active_.erase(std::remove(active_.begin(), active_.end(), &it->second), active_.end());
  clients_.erase(it);
}

void BrokerCore::client_gone(const std::string& peer) {
  auto it = clients_.find(peer);
  if (it != clients_.end() && it->second.expiry != Clock::duration::zero()) drop_client(peer);
}

namespace {
// After a disconnect, how long after the first probe each later one goes. The ROUTER
// lets go of a closed connection's pipe microseconds after the report as a rule, later
// on a loaded host; a client dead longer than the last one unnoticed is found by its
// heartbeat expiry.
constexpr std::array<Clock::duration, 3> kReprobes{
    std::chrono::milliseconds(10), std::chrono::milliseconds(100), std::chrono::seconds(1)};
}  // namespace

void BrokerCore::on_disconnect(TimePoint now) {
  probe_clients();
  disconnected_at_ = now;
  probes_done_ = 0;
}

TimePoint BrokerCore::next_probe() const {
  return probes_done_ < kReprobes.size() ? disconnected_at_ + kReprobes[probes_done_]
                                         : TimePoint::max();
}

// The next probe of the schedule that on_disconnect began, when it is due.
void BrokerCore::reprobe(TimePoint now) {
  if (now < next_probe()) return;
  probe_clients();
  ++probes_done_;
}

void BrokerCore::probe_clients() {
  for (const auto& [id, c] : clients_)
    if (c.expiry != Clock::duration::zero())
      outbox_.push_back({Side::client, proto::make(proto::Cmd::heartbeat, std::vector<int>{}, id)});
}

void BrokerCore::shutdown(const std::string& reason) {
  for (const auto& [id, c] : clients_)
    if (c.expiry != Clock::duration::zero())
      outbox_.push_back({Side::client, proto::make(proto::Cmd::bye, proto::Bye{reason}, id)});
  for (const auto& [id, a] : agents_)
    outbox_.push_back({Side::worker, proto::make(proto::Cmd::bye, proto::Bye{reason}, a.id)});
}

void BrokerCore::refuse(Side side, const std::string& peer) {
  ++counters_.refused;
  outbox_.push_back(
      {side, proto::make(proto::Cmd::refused,
                         proto::Bye{side == Side::client ? kWrongFrontend : kWrongBackend}, peer)});
}

void BrokerCore::on_agent_hello(const std::string& peer, const proto::AgentHello& h,
                                TimePoint now) {
  if (peer != proto::agent_id(h.agent))
    throw SerializationError("agent hello: id and routing id differ");
  Agent& a = agents_[h.agent];
  if (a.id.empty()) a.since = now;
  a.id = peer;
  a.host = h.host;
  a.pid = h.pid;
  a.executors = h.executors;
  a.tasks = std::unordered_set<std::string>(h.tasks.begin(), h.tasks.end());
  a.expiry = silence_window(h.heartbeat_ms, h.liveness);
  a.last_seen = now;
  next_sweep_ = std::min(next_sweep_, now + a.expiry);
  for (const std::string& t : h.tasks) unknown_since_.erase(t);
  if (!chunks_.empty()) next_unknown_check_ = std::min(next_unknown_check_, now);
  if (auto owed = owed_kills_.extract(h.agent))
    for (std::uint32_t pid : owed.mapped()) send_kill(h.agent, pid);
  outbox_.push_back({Side::worker, proto::make(proto::Cmd::welcome, proto::Welcome{id_, 0}, peer)});
}

// The agent drains (SIGTERM): its executors finish what they hold and get nothing new.
// They leave with a planned exit, which hands their unstarted chunks back.
void BrokerCore::on_leaving(const std::string& peer) {
  for (auto& [agent_id, a] : agents_) {
    if (a.id != peer) continue;
    a.leaving = true;
    for (auto& [id, e] : executors_) {
      if (e.agent != agent_id) continue;
      e.doomed = true;
      ready_.remove(e);
    }
  }
}

// HEARTBEAT from a client, an agent or an executor's heartbeat socket: echoed to a peer
// the broker knows, answered with RESET otherwise, so that a peer forgotten (expired, or
// by a restarted broker) registers again at once instead of after its own expiry.
void BrokerCore::on_heartbeat(Side side, const std::string& peer, TimePoint now) {
  bool known = false;
  if (side == Side::client) {
    auto it = clients_.find(peer);
    known = it != clients_.end();
    if (known) seen(peer, now);
  } else if (!peer.empty() && peer.back() == proto::kHeartbeatSuffix && peer[0] == 'E') {
    const std::string id = peer.substr(0, peer.size() - 1);
    known = executors_.count(id) != 0;
    if (known) seen(id, now);
  } else if (peer.size() == 1 + sizeof(std::uint64_t) && peer[0] == 'A') {
    std::uint64_t agent = 0;
    std::memcpy(&agent, peer.data() + 1, sizeof agent);
    auto it = agents_.find(agent);
    known = it != agents_.end();
    if (known) it->second.last_seen = now;
  } else {
    throw SerializationError("heartbeat: not from an agent or an executor");
  }
  outbox_.push_back({side, proto::make(known ? proto::Cmd::heartbeat : proto::Cmd::reset,
                                       std::vector<int>{}, peer)});
}

void BrokerCore::seen(const std::string& id, TimePoint now) {
  Clock::duration expiry;
  if (auto e = executors_.find(id); e != executors_.end()) {
    e->second.last_seen = now;
    expiry = e->second.expiry;
  } else if (auto c = clients_.find(id); c != clients_.end()) {
    c->second.last_seen = now;
    expiry = c->second.expiry;
  } else {
    return;
  }
  next_sweep_ = std::min(next_sweep_, now + expiry);
}

// Paranoid Pirate: a peer silent for its whole liveness window is gone. An executor
// (stopped, hung in the kernel, its host gone) has its chunks retried elsewhere and its
// agent is told to kill it, so it cannot come back with stale work; a client has its
// work dropped; an agent is forgotten (its executors expire on their own). One pass per
// expiry window at most, never per task.
void BrokerCore::expire_silent(TimePoint now) {
  if (now < next_sweep_) return;
  next_sweep_ = TimePoint::max();
  auto due = [&](TimePoint last, Clock::duration expiry) {
    if (last + expiry <= now) return true;
    next_sweep_ = std::min(next_sweep_, last + expiry);
    return false;
  };
  std::vector<std::string> lost;
  for (auto& [id, e] : executors_)
    if (due(e.last_seen, e.expiry)) lost.push_back(id);
  for (const std::string& id : lost) {
    const Executor& e = executors_.at(id);
    const std::string reason =
        "stopped answering (no heartbeat for " +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(e.expiry).count()) +
        " ms)";
    send_kill(e.agent, e.pid);
    drop_executor(id, true, reason);
  }
  lost.clear();
  for (auto& [id, c] : clients_)
    if (c.expiry != Clock::duration::zero() && due(c.last_seen, c.expiry)) lost.push_back(id);
  for (const std::string& id : lost) drop_client(id);
  for (auto it = agents_.begin(); it != agents_.end();)
    it = due(it->second.last_seen, it->second.expiry) ? agents_.erase(it) : std::next(it);
}

bool BrokerCore::anyone_knows(const std::string& fn) const {
  return std::any_of(agents_.begin(), agents_.end(),
                     [&](const auto& a) { return a.second.tasks.count(fn) > 0; });
}

// A task name that no connected agent announced fails its queued chunks with
// UnknownTaskError once it has been unknown for the grace period (workers that know it
// may be joining). With no agent at all, work waits: the first worker has not come yet.
// Only the head of each client's queue is looked at: a chunk that cannot run there
// holds back nothing else (next_client passes over it), and it is failed in time.
void BrokerCore::fail_unknown_tasks(TimePoint now) {
  next_unknown_check_ = TimePoint::max();
  if (agents_.empty()) return;
  for (Client* c : std::vector<Client*>(active_)) {
    ChunkIt it;
    while (head(*c, &it) != nullptr && !anyone_knows(it->second.spec.fn)) {
      const std::string fn = it->second.spec.fn;
      const TimePoint since = unknown_since_.try_emplace(fn, now).first->second;
      if (now < since + unknown_grace_) {
        next_unknown_check_ = std::min(next_unknown_check_, since + unknown_grace_);
        break;
      }
      dequeue_head(*c);
      fail(it->first, WireError{ErrorCode::unknown_task, "",
                                "no connected worker knows the task '" + fn + "'", fn, ""});
    }
  }
}

void BrokerCore::count_done(std::uint64_t tasks, TimePoint now) {
  const std::int64_t sec = whole_seconds(now);
  Second& s = rate_[static_cast<std::size_t>(sec % 10)];
  if (s.at != sec) s = Second{sec, 0};
  s.tasks += tasks;
}

void BrokerCore::status(const std::string& peer, TimePoint now) {
  proto::StatusReport r;
  r.broker = id_;
  r.uptime_s = seconds(now - started_);
  for (const auto& [agent_id, a] : agents_) {
    WorkerStatus w{a.host, a.pid, 0, 0, a.tasks_done, "", 0, seconds(now - a.since), a.leaving};
    TimePoint oldest = TimePoint::max();
    for (const auto& [id, e] : executors_) {
      if (e.agent != agent_id) continue;
      ++w.executors;
      if (e.sent.empty()) continue;
      ++w.busy;
      if (e.sent.front().at < oldest) {
        oldest = e.sent.front().at;
        w.current_task = e.sent.front().fn;
        w.current_for_s = seconds(now - oldest);
      }
    }
    r.workers.push_back(std::move(w));
  }
  std::unordered_map<const Client*, ClientStatus> per_client;
  for (const auto& [id, c] : clients_)
    per_client[&c] = ClientStatus{c.name, 0, 0, seconds(now - c.since)};
  for (const auto& [id, ch] : chunks_) {
    ClientStatus& cs = per_client[ch.client];
    (ch.executor.empty() ? cs.queued : cs.in_flight) += ch.spec.count;
    (ch.executor.empty() ? r.queued : r.in_flight) += ch.spec.count;
  }
  for (auto& [c, cs] : per_client) r.clients.push_back(std::move(cs));
  r.done = counters_.done;
  r.failed = counters_.failed;
  r.retried = counters_.retried;
  r.malformed = counters_.malformed;
  r.duplicates = counters_.duplicates;
  const std::int64_t sec = whole_seconds(now);
  std::uint64_t recent = 0;
  for (const Second& s : rate_)
    if (s.at > sec - 10) recent += s.tasks;
  r.tasks_per_s = static_cast<double>(recent) / std::clamp(r.uptime_s, 1.0, 10.0);
  outbox_.push_back({Side::client, proto::make(proto::Cmd::status, r, peer)});
}

}  // namespace mqpool::broker
