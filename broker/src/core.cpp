#include "broker/core.hpp"

#include <algorithm>
#include <cstring>
#include <random>

namespace mqpool::broker {

namespace {
constexpr std::size_t kMaxBundle = 64;  // chunks per TASK message, when the queue is deep
// A bundle carries about this much work: long enough to amortise the round trip that
// an executor waits between TASKs, short enough that the tail of a map stays balanced.
constexpr auto kBundleWork = std::chrono::milliseconds(2);
// A busy executor gets a second TASK (prefetch, hiding the round trip) only when what it
// runs is known to end within this; a task never waits long behind another on a busy
// executor while an idle one could have taken it.
constexpr auto kPrefetchHorizon = std::chrono::milliseconds(50);
// The last queued chunk, when it holds more work than this, goes out in halves (and the
// half left queued again, when its turn comes): guided self-scheduling for the end of a
// job, so that executors finish together instead of one running a long chunk alone.
constexpr auto kTailSplit = std::chrono::milliseconds(20);

// A chunk's arguments cut at msgpack object boundaries into frames of counts[i]
// consecutive tasks each (the counts add up to the chunk's).
std::vector<zmq::message_t> split_args(const zmq::message_t& args, std::uint32_t count,
                                       const std::vector<std::uint32_t>& counts) {
  const std::vector<std::size_t> sizes = detail::object_sizes(args.data(), args.size(), count);
  std::vector<zmq::message_t> out;
  const char* p = args.data<char>();
  std::size_t task = 0;
  for (const std::uint32_t n : counts) {
    std::size_t bytes = 0;
    for (std::size_t k = task; k < task + n; ++k) bytes += sizes[k];
    out.emplace_back(p, bytes);
    p += bytes;
    task += n;
  }
  return out;
}

// `count` tasks in `pieces` runs, as even as can be.
std::vector<std::uint32_t> even(std::uint32_t count, std::uint32_t pieces) {
  std::vector<std::uint32_t> counts;
  for (std::uint32_t i = 0; i < pieces; ++i)
    counts.push_back(static_cast<std::uint32_t>(std::uint64_t{count} * (i + 1) / pieces -
                                                std::uint64_t{count} * i / pieces));
  return counts;
}

std::uint64_t random_id() {
  std::random_device rd;
  return std::uint64_t{rd()} << 32 | rd();
}

}  // namespace

BrokerCore::BrokerCore(std::uint64_t id) : id_(id != 0 ? id : random_id()) {}

void BrokerCore::on_client(proto::Message&& m, TimePoint now) {
  if (started_ == TimePoint{}) started_ = now;  // the first message starts the uptime
  switch (m.cmd) {
    case proto::Cmd::submit: {
      auto specs = proto::decode<std::vector<proto::ChunkSpec>>(m);
      if (specs.size() != m.frames.size())
        throw SerializationError("submit: chunk count and frame count differ");
      // Every task takes at least one byte of arguments; a count its frame cannot hold
      // would make later failure paths allocate per declared task.
      for (std::size_t i = 0; i < specs.size(); ++i)
        if (specs[i].count == 0 || specs[i].count > m.frames[i].size())
          throw SerializationError("submit: chunk declares " + std::to_string(specs[i].count) +
                                   " tasks in " + std::to_string(m.frames[i].size()) + " bytes");
      Client* c = known_client(m.peer, now);
      if (c == nullptr) return;  // told to HELLO again: it resubmits everything then
      for (std::size_t i = 0; i < specs.size(); ++i)
        submit(*c, std::move(specs[i]), std::move(m.frames[i]), now);
      break;
    }
    case proto::Cmd::cancel:
      if (known_client(m.peer, now) != nullptr) cancel_client(m.peer);
      break;
    case proto::Cmd::hello:
      on_hello(m.peer, proto::decode<proto::Hello>(m), now);
      return;
    case proto::Cmd::heartbeat:
      on_heartbeat(Side::client, m.peer, now);
      return;
    case proto::Cmd::bye:
      drop_client(m.peer);
      break;
    case proto::Cmd::status:
      status(m.peer, now);
      return;
    case proto::Cmd::ready:
    case proto::Cmd::agent_hello:
    case proto::Cmd::done:
    case proto::Cmd::exited:
    case proto::Cmd::leaving:
      refuse(Side::client, m.peer);
      return;
    default:
      throw SerializationError("unexpected command from a client");
  }
  dispatch(now);
}

void BrokerCore::on_worker(proto::Message&& m, TimePoint now) {
  if (started_ == TimePoint{}) started_ = now;  // the first message starts the uptime
  switch (m.cmd) {
    case proto::Cmd::ready:
      on_ready(m.peer, proto::decode<proto::Ready>(m), now);
      break;
    case proto::Cmd::heartbeat:
      on_heartbeat(Side::worker, m.peer, now);
      return;
    case proto::Cmd::done:
      seen(m.peer, now);
      on_done(m.peer, m, now);
      break;
    case proto::Cmd::agent_hello:
      on_agent_hello(m.peer, proto::decode<proto::AgentHello>(m), now);
      break;
    case proto::Cmd::exited:
      on_exited(m.peer, proto::decode<proto::Exited>(m));
      break;
    case proto::Cmd::leaving:
      on_leaving(m.peer);
      break;
    case proto::Cmd::submit:
    case proto::Cmd::hello:
    case proto::Cmd::cancel:
    case proto::Cmd::status:
    case proto::Cmd::bye:
      refuse(Side::worker, m.peer);
      return;
    default:
      throw SerializationError("unexpected command from a worker");
  }
  dispatch(now);
}

void BrokerCore::submit(Client& client, proto::ChunkSpec spec, zmq::message_t args, TimePoint now) {
  if (!agents_.empty() && spec.fn != last_known_fn_) {
    if (anyone_knows(spec.fn))
      last_known_fn_ = spec.fn;
    else
      next_unknown_check_ = std::min(next_unknown_check_, now);  // fail_unknown_tasks looks
  }
  const std::uint64_t id = next_chunk_++;
  counters_.submitted += spec.count;
  chunks_.emplace(id, Chunk{&client, std::move(spec), std::move(args), 0, false, {}, {}});
  enqueue(id, client, false);
}

// Puts a chunk on its client's queue (the back for new work, the front for retries and
// split pieces). A client that had nothing queued joins the turn order at the level of
// the last TASK's client before that TASK (start-time fair queueing): it goes next, but
// its idle time is not banked as a claim on the executors.
void BrokerCore::enqueue(std::uint64_t id, Client& c, bool front) {
  if (front)
    c.queue.push_front(id);
  else
    c.queue.push_back(id);
  ++c.live;
  ++queue_live_;
  if (c.active) return;
  c.active = true;
  c.served = std::max(c.served, vtime_);
  active_.push_back(&c);
}

void BrokerCore::on_ready(const std::string& peer, const proto::Ready& r, TimePoint now) {
  if (peer.empty() || peer[0] != 'E') throw SerializationError("ready: not from an executor");
  Executor& e = executors_[peer];
  e.expiry = silence_window(r.heartbeat_ms, r.liveness);
  seen(peer, now);
  e.agent = r.agent;
  e.pid = r.pid;
  e.name = r.host + ":" + std::to_string(r.pid);
  e.capacity = std::clamp<std::uint32_t>(r.credit, 1, 16);
  e.max_bundle = r.max_bundle;
  ready_.ensure(e.capacity);
  e.id = &executors_.find(peer)->first;
  if (auto a = agents_.find(r.agent); a != agents_.end() && a->second.leaving) e.doomed = true;
  offer(e);
}

// Moves the executor to the tail of the ready list of its current load, or off the
// lists when it has no credit left or must get no work.
void BrokerCore::offer(Executor& e) {
  ready_.remove(e);
  if (e.doomed || e.exclusive || e.inflight >= e.capacity) return;
  if (e.inflight > 0 && !prefetchable(e)) return;  // back on a list when its DONE comes
  ready_.push_back(e, e.inflight);
}

// The least-loaded executor with credit, off the lists; nullptr if none.
BrokerCore::Executor* BrokerCore::pop_ready() { return static_cast<Executor*>(ready_.pop_front()); }

// Chunks one TASK may take from the queue so that every executor still gets a share.
std::size_t BrokerCore::share() const {
  const std::size_t s = queue_live_ / (2 * std::max<std::size_t>(executors_.size(), 1));
  return std::clamp<std::size_t>(s, 1, kMaxBundle);
}

bool BrokerCore::prefetchable(const Executor& e) const {
  Clock::duration busy{};
  for (const Executor::Sent& s : e.sent) {  // at most `capacity` entries
    auto cost = cost_.find(s.fn);
    if (cost == cost_.end()) return false;
    busy += cost->second * static_cast<std::int64_t>(s.tasks);
  }
  return busy <= kPrefetchHorizon;
}

void BrokerCore::learn_cost(Executor& e, TimePoint now) {
  if (e.sent.empty()) return;
  const Executor::Sent& s = e.sent.front();
  const TimePoint start = std::max(s.at, e.last_done);  // queued behind the previous TASK
  e.last_done = now;
  const auto per_task = (now - start) / std::max<std::uint64_t>(s.tasks, 1);
  auto [it, fresh] = cost_.try_emplace(s.fn, per_task);
  if (!fresh) it->second = (it->second * 3 + per_task) / 4;  // EWMA: follows drift, damps noise
  e.sent.pop_front();
}

// Hands queued chunks to executors with credit, least-loaded executors first, each
// TASK from the client whose turn it is.
void BrokerCore::dispatch(TimePoint now) {
  std::vector<Executor*> nothing_for;  // executors whose agent runs none of the queued tasks
  while (queue_live_ > 0) {
    Executor* e = pop_ready();
    if (e == nullptr) break;
    Client* c = next_client(*e);
    if (c == nullptr) {
      nothing_for.push_back(e);
      continue;
    }
    const bool sent = fill(*e, *c, now);
    offer(*e);
    if (!sent) break;  // the head waits for an idle executor, and this was the least loaded
  }
  for (Executor* e : nothing_for) offer(*e);
}

// Takes the live chunk at the head of the client's queue (head() found it) off the queue.
void BrokerCore::dequeue_head(Client& c) {
  c.queue.pop_front();
  --c.live;
  --queue_live_;
}

// The first live chunk of the client's queue (stale entries are dropped on the way).
BrokerCore::Chunk* BrokerCore::head(Client& c, ChunkIt* out) {
  while (!c.queue.empty()) {
    auto it = chunks_.find(c.queue.front());
    if (it == chunks_.end() || !it->second.executor.empty()) {
      c.queue.pop_front();  // finished, cancelled or split while queued
      continue;
    }
    if (out != nullptr) *out = it;
    return &it->second;
  }
  return nullptr;
}

// The least-served client with queued work whose next chunk `e`'s agent can run.
// Clients whose queue turned out empty leave the turn order.
BrokerCore::Client* BrokerCore::next_client(const Executor& e) {
  Client* best = nullptr;
  for (std::size_t i = 0; i < active_.size();) {
    Client* c = active_[i];
    Chunk* h = c->live > 0 ? head(*c) : nullptr;
    if (h == nullptr) {
      c->active = false;
      // erase, not swap-and-pop: ties keep their arrival order
      active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    if ((best == nullptr || c->served < best->served) && knows(e, h->spec.fn)) best = c;
    ++i;
  }
  return best;
}

// True unless the agent of `e` announced its task names and `fn` is not among them (an
// executor whose AGENT_HELLO has not arrived yet may run anything: it answers an
// unknown name itself).
bool BrokerCore::knows(const Executor& e, const std::string& fn) const {
  auto a = agents_.find(e.agent);
  return a == agents_.end() || a->second.tasks.count(fn) > 0;
}

// One TASK being filled: its chunks' specs and argument frames, and what it carries in
// tasks and in measured work (for the client's charge and the bundle's limit).
struct BrokerCore::Bundle {
  std::vector<proto::TaskSpec> specs;
  std::vector<zmq::message_t> frames;
  std::uint64_t tasks = 0;
  Clock::duration work{};
};

// Sends `e` one TASK of chunks from the head of `c`'s queue. False if nothing was sent
// because the head chunk must travel alone and `e` is busy.
bool BrokerCore::fill(Executor& e, Client& c, TimePoint now) {
  Bundle b;
  const std::size_t limit = bundle_limit(e);
  ChunkIt it;
  while (b.specs.size() < limit && head(c, &it) != nullptr) {
    const Chunk& ch = it->second;
    const bool alone = travels_alone(ch);
    if (alone && !b.specs.empty()) break;
    const Clock::duration* cost = known_cost(ch.spec.fn);
    if (!b.specs.empty() && !bundle_admits(e, b, ch, cost)) break;
    if (alone && e.inflight > 0) return false;  // ready_ gave the least-loaded executor first
    if (coalesced_piece(e, it, cost) || (b.specs.empty() && !alone && halve_tail(it, cost)))
      continue;  // its first piece is at the head now
    assign(e, b, it, cost);
    if (alone) {
      run_alone(e, it, now);
      break;
    }
  }
  if (b.specs.empty()) return true;  // the queue held only stale entries
  send_task(e, c, b, now);
  return true;
}

// An executor that asked for at most max_bundle chunks a TASK (maxtasksperchild) gets no
// more, whatever its share of a deep queue.
std::size_t BrokerCore::bundle_limit(const Executor& e) const {
  return e.max_bundle > 0 ? std::min<std::size_t>(share(), e.max_bundle) : share();
}

// A chunk with a time limit, or one that was on an executor that died, travels alone and
// only to an idle executor: its clock then measures the task itself, and its next death
// is its own.
bool BrokerCore::travels_alone(const Chunk& ch) { return ch.spec.timeout_ms > 0 || ch.suspect; }

// The measured time per task of `fn`; nullptr while none is known. Looked up once per
// chunk and handed to the policies, so that the hot path does one cost_ lookup a chunk.
const Clock::duration* BrokerCore::known_cost(const std::string& fn) const {
  auto it = cost_.find(fn);
  return it != cost_.end() ? &it->second : nullptr;
}

// Beyond its first chunk a TASK takes only what is known to be cheap and that `e` can
// run, up to kBundleWork in all: a bundle amortises the round trip, never hides a long
// task behind it.
bool BrokerCore::bundle_admits(const Executor& e, const Bundle& b, const Chunk& ch,
                               const Clock::duration* cost) const {
  return cost != nullptr && knows(e, ch.spec.fn) && b.work + *cost * ch.spec.count <= kBundleWork;
}

// A batch of single tasks (calls, or one job's tasks of chunksize 1) goes out in pieces
// of about kBundleWork of measured work, one task at a time while the cost is unknown:
// as if each were its own chunk, so that expensive tasks still spread over the
// executors. An executor that counts chunks for maxtasksperchild (max_bundle) gets one
// task a piece, so that each task counts. True if its first piece is at the head now.
bool BrokerCore::coalesced_piece(const Executor& e, ChunkIt it, const Clock::duration* cost) {
  const proto::ChunkSpec& s = it->second.spec;
  if (!s.coalesced || s.count <= 1) return false;
  std::uint32_t piece = 1;
  if (cost != nullptr && e.max_bundle == 0)
    piece = static_cast<std::uint32_t>(
        std::clamp<std::int64_t>(kBundleWork / std::max(*cost, Clock::duration(1)), 1, s.count));
  return piece < s.count && split_head(it, {piece, s.count - piece});
}

// The last queued chunk, when it holds more than kTailSplit of work, is halved (see
// kTailSplit) so that the executors finish a job together. True if the first half is at
// the head now.
bool BrokerCore::halve_tail(ChunkIt it, const Clock::duration* cost) {
  const std::uint32_t count = it->second.spec.count;
  if (queue_live_ != 1 || count <= 1 || executors_.size() <= 1 || cost == nullptr) return false;
  return *cost * count > kTailSplit && split_head(it, even(count, 2));
}

// Moves the head chunk from the queue into the TASK for `e`. Its arguments' buffer is
// shared (refcounted), not copied: the chunk keeps it for a retry.
void BrokerCore::assign(Executor& e, Bundle& b, ChunkIt it, const Clock::duration* cost) {
  Chunk& ch = it->second;
  dequeue_head(*ch.client);
  ch.executor = *e.id;
  e.chunks.insert(it->first);
  b.specs.push_back(proto::TaskSpec{it->first, ch.spec.count, ch.spec.fn});
  b.tasks += ch.spec.count;
  if (cost != nullptr) b.work += *cost * ch.spec.count;
  b.frames.emplace_back();
  b.frames.back().copy(ch.args);
}

// A chunk that travels alone has its executor to itself until its DONE (nothing else
// runs meanwhile, so its time limit, counted from now, measures it alone).
void BrokerCore::run_alone(Executor& e, ChunkIt it, TimePoint now) {
  const proto::ChunkSpec& s = it->second.spec;
  if (s.timeout_ms > 0)
    deadlines_.push({now + std::chrono::milliseconds(s.timeout_ms), it->first, *e.id});
  e.exclusive = true;
}

// Queues the TASK and takes one of `e`'s credits. The record in e.sent is what its DONE
// teaches the cost from, and what a death of `e` hands back.
void BrokerCore::send_task(Executor& e, Client& c, Bundle& b, TimePoint now) {
  charge(c, b);
  ++e.inflight;
  std::vector<std::uint64_t> ids;
  ids.reserve(b.specs.size());
  for (const auto& t : b.specs) ids.push_back(t.chunk);
  e.sent.push_back({now, b.tasks, b.specs.front().fn, std::move(ids)});
  proto::Message m = proto::make(proto::Cmd::task, b.specs, *e.id);
  m.frames = std::move(b.frames);
  outbox_.push_back({Side::worker, std::move(m)});
}

// The client's turn in the fair queueing moves by the TASK's work. Work of unknown cost
// counts as a millisecond a task, so that a new function cannot take every executor
// before its cost is known.
void BrokerCore::charge(Client& c, const Bundle& b) {
  vtime_ = c.served;
  c.served += b.work > Clock::duration{}
                  ? b.work
                  : std::chrono::milliseconds(1) * static_cast<std::int64_t>(b.tasks);
}

// Queues one RESULT for `client`: each spec's chunk with its (errors, values) frames.
void BrokerCore::deliver(const std::string& client, const std::vector<proto::ResultSpec>& specs,
                         std::vector<zmq::message_t> frames) {
  proto::Message m = proto::make(proto::Cmd::result, specs, client);
  m.frames = std::move(frames);
  outbox_.push_back({Side::client, std::move(m)});
}

void BrokerCore::on_done(const std::string& peer, proto::Message& m, TimePoint now) {
  auto ids = proto::decode<std::vector<std::uint64_t>>(m);
  if (m.frames.size() != 2 * ids.size())
    throw SerializationError("done: chunk count and frame count differ");
  auto ex = executors_.find(peer);
  // One RESULT per client per DONE, however many chunks the bundle held.
  struct Reply {
    const Client* client;
    std::vector<proto::ResultSpec> specs;
    std::vector<zmq::message_t> frames;
  };
  std::vector<Reply> replies;
  std::size_t foreign = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto it = chunks_.find(ids[i]);
    if (it == chunks_.end()) {
      ++counters_.duplicates;  // finished elsewhere already, or its client cancelled
      continue;
    }
    Chunk& c = it->second;
    // Only an executor that was given the chunk may answer for it: no peer on the
    // worker side can put results of its making into another client's job.
    if (c.executor != peer &&
        std::find(c.earlier.begin(), c.earlier.end(), peer) == c.earlier.end()) {
      ++foreign;
      continue;
    }
    if (c.executor.empty()) {
      --queue_live_;  // a late answer for a chunk that was queued again: take it
      --c.client->live;
    } else if (auto owner = executors_.find(c.executor); owner != executors_.end()) {
      owner->second.chunks.erase(ids[i]);
    }
    counters_.failed += proto::error_count(m.frames[2 * i]);
    counters_.done += c.spec.count;
    count_done(c.spec.count, now);
    if (ex != executors_.end())
      if (auto a = agents_.find(ex->second.agent); a != agents_.end())
        a->second.tasks_done += c.spec.count;
    auto r = std::find_if(replies.begin(), replies.end(),
                          [&](const Reply& x) { return x.client == c.client; });
    if (r == replies.end()) r = replies.insert(replies.end(), Reply{c.client, {}, {}});
    r->specs.push_back({c.spec.job, c.spec.seq, c.spec.count});
    r->frames.push_back(std::move(m.frames[2 * i]));
    r->frames.push_back(std::move(m.frames[2 * i + 1]));
    chunks_.erase(it);  // now: a chunk named twice in one DONE is answered once
  }
  for (Reply& r : replies) deliver(r.client->id, r.specs, std::move(r.frames));
  if (ex != executors_.end() && ex->second.inflight > 0) {
    learn_cost(ex->second, now);
    --ex->second.inflight;
    ex->second.exclusive = false;
    offer(ex->second);
  }
  // Counted and logged as malformed (the Receiver), after the rest of the DONE was taken.
  if (foreign > 0)
    throw SerializationError("done: " + std::to_string(foreign) +
                             " chunk(s) that this executor was never given");
}

void BrokerCore::on_exited(const std::string& agent_peer, const proto::Exited& e) {
  if (agent_peer.size() != 1 + sizeof(std::uint64_t) || agent_peer[0] != 'A')
    throw SerializationError("exited: not from an agent");
  std::uint64_t agent = 0;
  std::memcpy(&agent, agent_peer.data() + 1, sizeof agent);
  drop_executor(proto::executor_id(agent, e.pid), !e.planned, e.reason);
}

// Forgets an executor; its chunks go back to the front of the queue. A death that was
// its own doing (not a planned exit, not a kill we ordered for someone else's timeout)
// counts against the retries of the tasks of the TASK it was running (API.md: the task's
// worker process died), when that TASK held one chunk. With several chunks on board the
// culprit is unknown (an executor reports a TASK only when all of it is done), so that
// death counts against none of them; nor does it when the one chunk is a batch of single
// tasks (ChunkSpec::coalesced), each as much its own as a chunk of one. Either way the
// chunks that had started are split into single tasks that travel alone: a poisonous
// input cannot take its neighbours down again, and its next death names it. A prefetched TASK had
// not started: it goes back untouched.
void BrokerCore::drop_executor(const std::string& id, bool its_fault, const std::string& reason) {
  auto it = executors_.find(id);
  if (it == executors_.end()) return;
  ready_.remove(it->second);
  Executor ex = std::move(it->second);
  executors_.erase(it);
  const bool crashed = its_fault && !ex.doomed;
  const std::vector<std::uint64_t> none;
  const auto& running = ex.sent.empty() ? none : ex.sent.front().chunks;
  for (std::uint64_t cid : ex.chunks) {
    const bool ran = std::find(running.begin(), running.end(), cid) != running.end();
    auto c = chunks_.find(cid);
    // A batch of single tasks has no culprit either: each is a chunk of its own.
    const bool known_culprit = running.size() == 1 && c != chunks_.end() &&
                               (!c->second.spec.coalesced || c->second.spec.count <= 1);
    requeue(cid, crashed && ran && known_culprit, crashed && ran, its_fault,
            reason + " on " + ex.name);
  }
}

// `lost`: the executor did not leave on purpose; the chunk counts as retried.
void BrokerCore::requeue(std::uint64_t id, bool penalise, bool split, bool lost,
                         const std::string& reason) {
  auto it = chunks_.find(id);
  if (it == chunks_.end()) return;
  Chunk& c = it->second;
  c.earlier.push_back(std::move(c.executor));
  c.executor.clear();
  if (penalise && ++c.losses > c.spec.max_retries) {
    fail(id, WireError{ErrorCode::worker_lost, "",
                       "worker process lost: " + reason + " (task '" + c.spec.fn + "', " +
                           std::to_string(c.losses) + " tries)",
                       c.spec.fn, ""});
    return;
  }
  if (lost) counters_.retried += c.spec.count;
  if (split) c.suspect = true;
  if (split && c.spec.count > 1) {
    // One poisonous input must not take its neighbours down with it: retry one by one.
    try {
      split_to_front(it, even(c.spec.count, c.spec.count));
    } catch (const SerializationError& e) {
      fail(id, WireError{ErrorCode::serialization, "",
                         std::string("cannot split chunk for retry: ") + e.what(), c.spec.fn, ""});
    }
    return;
  }
  enqueue(id, *c.client, true);
}

// Replaces a chunk that is not queued by chunks of counts[i] of its consecutive tasks,
// queued at the front in order. Throws SerializationError (the chunk unchanged) if its
// arguments cannot be cut.
void BrokerCore::split_to_front(ChunkIt it, const std::vector<std::uint32_t>& counts) {
  std::vector<zmq::message_t> parts = split_args(it->second.args, it->second.spec.count, counts);
  Chunk whole = std::move(it->second);
  chunks_.erase(it);
  std::uint64_t seq = whole.spec.seq + whole.spec.count;
  for (std::size_t i = counts.size(); i-- > 0;) {  // pushed to the front: the last piece first
    proto::ChunkSpec spec = whole.spec;
    seq -= counts[i];
    spec.seq = seq;
    spec.count = counts[i];
    const std::uint64_t nid = next_chunk_++;
    chunks_.emplace(nid, Chunk{whole.client,
                               std::move(spec),
                               std::move(parts[i]),
                               whole.losses,
                               whole.suspect,
                               {},
                               {}});
    enqueue(nid, *whole.client, true);
  }
}

// The same for the chunk at the head of the queue: its pieces take its place there. False,
// the chunk left whole at the head, if its arguments cannot be cut.
bool BrokerCore::split_head(ChunkIt it, const std::vector<std::uint32_t>& counts) {
  Client& c = *it->second.client;
  dequeue_head(c);
  try {
    split_to_front(it, counts);
    return true;
  } catch (const SerializationError&) {
    enqueue(it->first, c, true);
    return false;
  }
}

// Fails every task of a chunk that is not queued (running or just taken off an executor).
void BrokerCore::fail(std::uint64_t id, const WireError& e) {
  auto it = chunks_.find(id);
  if (it == chunks_.end()) return;
  std::vector<zmq::message_t> frames;
  proto::fail_frames(it->second.spec.count, e, frames);
  counters_.failed += it->second.spec.count;
  counters_.done += it->second.spec.count;
  const proto::ChunkSpec& spec = it->second.spec;
  deliver(it->second.client->id, {{spec.job, spec.seq, spec.count}}, std::move(frames));
  chunks_.erase(it);
}

void BrokerCore::kill_executor(const std::string& id) {
  auto it = executors_.find(id);
  if (it == executors_.end() || it->second.doomed) return;
  Executor& ex = it->second;
  ex.doomed = true;
  ready_.remove(ex);  // no more work for it
  send_kill(ex.agent, ex.pid);
}

// KILL{pid} to the executor's agent. An executor may be at work before its agent's
// AGENT_HELLO arrives (they connect separately, and the agent's first connect may fail
// while the broker is still binding): the KILL is then owed, and sent on that hello.
void BrokerCore::send_kill(std::uint64_t agent_id, std::uint32_t pid) {
  auto agent = agents_.find(agent_id);
  if (agent == agents_.end()) {
    owed_kills_[agent_id].insert(pid);
    return;
  }
  outbox_.push_back(
      {Side::worker, proto::make(proto::Cmd::kill, proto::Kill{pid}, agent->second.id)});
}

// Forgets every chunk of the client: queued ones leave its queue, running ones have
// their executor killed (their outcome would go nowhere, and the executor is needed).
void BrokerCore::cancel_client(const std::string& client) {
  auto cl = clients_.find(client);
  if (cl == clients_.end()) return;
  Client* owner = &cl->second;
  std::vector<std::uint64_t> mine;
  for (auto& [id, c] : chunks_)
    if (c.client == owner) mine.push_back(id);
  for (std::uint64_t id : mine) {
    auto it = chunks_.find(id);
    if (!it->second.executor.empty()) {
      auto ex = executors_.find(it->second.executor);
      if (ex != executors_.end()) {
        ex->second.chunks.erase(id);
        kill_executor(it->second.executor);
      }
    }
    chunks_.erase(it);
  }
  queue_live_ -= owner->live;
  owner->live = 0;
  owner->queue.clear();
}

void BrokerCore::on_tick(TimePoint now) {
  expire_silent(now);
  reprobe(now);
  if (now >= next_unknown_check_) fail_unknown_tasks(now);
  while (!deadlines_.empty() && deadlines_.top().at <= now) {
    Deadline d = deadlines_.top();
    deadlines_.pop();
    auto it = chunks_.find(d.chunk);
    if (it == chunks_.end() || it->second.executor != d.executor) continue;  // finished in time
    const proto::ChunkSpec& s = it->second.spec;
    auto ex = executors_.find(d.executor);
    const std::string where = ex != executors_.end() ? ex->second.name : std::string("?");
    if (ex != executors_.end()) ex->second.chunks.erase(d.chunk);
    fail(d.chunk, WireError{ErrorCode::timeout, "",
                            "task '" + s.fn + "' ran past its time limit of " +
                                std::to_string(s.timeout_ms) + " ms on " + where,
                            s.fn, where});
    kill_executor(d.executor);
  }
  dispatch(now);
}

TimePoint BrokerCore::next_deadline() const {
  return std::min({next_sweep_, next_unknown_check_, next_probe(),
                   deadlines_.empty() ? TimePoint::max() : deadlines_.top().at});
}

std::vector<Outgoing> BrokerCore::take_outbox() {
  std::vector<Outgoing> out;
  out.swap(outbox_);
  return out;
}

}  // namespace mqpool::broker
