#include "session.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <random>

#include "common/fault.hpp"
#include "common/host.hpp"
#include "common/log.hpp"
#include "mqpool/registry.hpp"
#include "test_hooks.hpp"

namespace mqpool::detail {

namespace {
constexpr std::size_t kChunksPerSubmit = 4096;  // one SUBMIT message carries at most this
constexpr std::size_t kDrainBatch = 256;

// Single tasks waiting together (apply_async in a loop) travel as one chunk, marked
// `coalesced`: one record, one frame and one outcome frame per batch in the broker and
// the executor instead of per task (measured: docs/PERFORMANCE.md, "What each design
// choice bought"). The broker
// hands such a chunk out in pieces sized to the measured cost, so expensive calls still
// spread over the executors. The batch's job hands each outcome to its caller's job.
constexpr std::size_t kMaxCoalesced = 64;
// The single tasks of one job (chunksize 1) batch likewise while their arguments are
// small: this many bytes for a batch of kMaxCoalesced.
constexpr std::size_t kMaxBatchedArgs = std::size_t{64} << 10;
// Batch job ids have the top bit set; the pool's own job ids count up from 0 and stay
// below it (at a billion jobs a second, for 292 years).
constexpr std::uint64_t kBatchIds = std::uint64_t{1} << 63;

class FanOutJob final : public Job {
 public:
  explicit FanOutJob(std::vector<std::shared_ptr<Job>> members) : members_(std::move(members)) {}
  std::uint32_t deliver(std::uint64_t first, std::uint32_t count, Reader& values,
                        const ErrorList& errors) override {
    std::uint32_t fresh = 0;
    std::size_t e = 0;
    for (std::uint32_t k = 0; k < count; ++k) {
      ErrorList mine;
      while (e < errors.size() && errors[e].first < k) ++e;
      if (e < errors.size() && errors[e].first == k) mine.emplace_back(0, errors[e].second);
      const std::uint64_t i = first + k;
      if (i >= members_.size()) {  // a broker's mistake: skip its value
        (void)values.next();
        continue;
      }
      fresh += members_[i]->deliver(0, 1, values, mine);
    }
    return fresh;
  }
  void fail(const WireError& e) override {
    for (auto& m : members_) m->fail(e);
  }

 private:
  std::vector<std::shared_ptr<Job>> members_;
};

}  // namespace

// Builds SUBMIT messages chunk by chunk into `out`, at most kChunksPerSubmit each.
class SubmitBuilder {
 public:
  // `expected`: about how many chunks will come, so that the lists are sized once.
  SubmitBuilder(std::vector<proto::Message>& out, std::size_t expected)
      : out_(out), reserve_(std::min(expected, kChunksPerSubmit)) {
    start();
  }
  // Adds one chunk; returns its frame, valid until the next add() or flush().
  zmq::message_t& add(const proto::ChunkSpec& spec, zmq::message_t frame) {
    if (specs_.size() == kChunksPerSubmit) flush();
    specs_.push_back(spec);
    msg_.frames.push_back(std::move(frame));
    return msg_.frames.back();
  }
  // Ends the message under way, if it holds any chunk.
  void flush() {
    if (specs_.empty()) return;
    msg_.header = proto::encode(specs_);
    out_.push_back(std::move(msg_));
    specs_.clear();
    start();
  }

 private:
  void start() {
    msg_ = proto::Message{};
    msg_.cmd = proto::Cmd::submit;
    specs_.reserve(reserve_);
    msg_.frames.reserve(reserve_);
  }

  std::vector<proto::Message>& out_;
  std::size_t reserve_;
  std::vector<proto::ChunkSpec> specs_;
  proto::Message msg_;
};

// A timed task is timed on its own, so it never joins a batch.
bool Session::single(const Op& op) {
  return op.kind == Op::submit && op.last && op.timeout_ms == 0 && op.chunks.size() == 1 &&
         op.chunks[0].count == 1 && op.chunks[0].first == 0;
}

std::exception_ptr to_exception(const WireError& e) {
  try {
    throw_error(e);
  } catch (...) {
    return std::current_exception();
  }
}

Session::Session(std::uint32_t max_retries, bool keep_sent, SharedMemoryLimits shared)
    : max_retries_(max_retries),
      next_batch_(g_test_hooks.first_batch),
      keep_sent_(keep_sent),
      shared_(shared) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

Session::~Session() { close(wake_fd_); }

void Session::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  wake();
}

void Session::wake() {
  const std::uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

// Returns true if the queue was empty: whoever takes the queue takes all of it, so only
// the first op after a take needs to wake the driver.
bool Session::push(Op&& op) {
  std::lock_guard lock(mu_);
  if (broken_) {
    if (op.kind == Op::submit) throw PoolStateError("Pool not running: " + broken_->message);
    return false;  // nothing left to fail or forget
  }
  if (op.kind == Op::submit)
    for (const auto& c : op.chunks) pending_ += c.count;
  else if (op.kind == Op::fail_all)
    ++fail_ops_;
  ops_.push_back(std::move(op));
  return ops_.size() == 1;
}

bool Session::submit(std::uint64_t job_id, std::shared_ptr<Job> job, const std::string& fn,
                     std::uint32_t timeout_ms, std::vector<EncodedChunk> chunks, bool last) {
  Op op;
  op.job_id = job_id;
  op.job = std::move(job);
  op.fn = fn;
  op.timeout_ms = timeout_ms;
  op.chunks = std::move(chunks);
  op.last = last;
  return push(std::move(op));
}

void Session::fail_all(const WireError& e) {
  std::uint64_t ticket;
  {
    std::lock_guard lock(mu_);
    ticket = fails_done_ + 1;
  }
  Op op;
  op.kind = Op::fail_all;
  op.error = std::make_shared<const WireError>(e);
  if (push(std::move(op))) wake();
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return fails_done_ >= ticket || stop_ || broken_; });
}

void Session::wait_idle() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return pending_ == 0 || stop_; });
}

// Called on the I/O thread with `done` new outcomes.
void Session::settle(std::uint64_t done) {
  if (done == 0) return;
  std::lock_guard lock(mu_);
  pending_ -= std::min(pending_, done);
  if (pending_ == 0) cv_.notify_all();
}

bool Session::take(std::vector<proto::Message>& out, bool loop_thread) {
  if (loop_thread) {
    std::uint64_t n;
    (void)!read(wake_fd_, &n, sizeof n);
  }
  {
    std::lock_guard lock(mu_);
    if (stop_ || (!loop_thread && fail_ops_ > 0)) return false;
    ops_taken_.swap(ops_);
    fail_ops_ = 0;
  }
  std::size_t waiting = 0;
  for (const Op& op : ops_taken_) waiting += op.chunks.size();
  SubmitBuilder submits(out, waiting);
  for (std::size_t o = 0; o < ops_taken_.size(); ++o) {
    Op& op = ops_taken_[o];
    if (op.kind == Op::fail_all) {
      submits.flush();
      take_fail_all(*op.error, out);
    } else if (op.kind == Op::abandon) {
      settle(drop_job(op.job_id));
    } else if (single(op)) {
      o += take_batch(o, submits) - 1;  // the loop's ++o moves past the batch
    } else {
      take_submit(op, submits);
    }
  }
  submits.flush();
  ops_taken_.clear();
  open_jobs_.store(jobs_.size(), std::memory_order_relaxed);
  return true;
}

// The single calls from ops_taken_[o] on that share its task travel as one chunk, with
// a FanOutJob that hands each outcome to its caller's job. Returns how many ops it took.
std::size_t Session::take_batch(std::size_t o, SubmitBuilder& submits) {
  const Op& op = ops_taken_[o];
  std::size_t end = o + 1;
  while (end < ops_taken_.size() && end - o < kMaxCoalesced && single(ops_taken_[end]) &&
         ops_taken_[end].fn == op.fn)
    ++end;
  if (end - o == 1) {
    take_submit(ops_taken_[o], submits);
    return 1;
  }
  std::vector<std::shared_ptr<Job>> members;
  Buffer args(64 * (end - o));
  for (std::size_t k = o; k < end; ++k) {
    members.push_back(std::move(ops_taken_[k].job));
    const Buffer& b = ops_taken_[k].chunks[0].args;
    args.write(b.data(), b.size());
  }
  const std::uint64_t batch_id = kBatchIds | next_batch_++;
  JobRec& rec = jobs_[batch_id];
  rec.job = std::make_shared<FanOutJob>(std::move(members));
  rec.outstanding = end - o;
  rec.last = true;
  const proto::ChunkSpec spec{batch_id,     0,   static_cast<std::uint32_t>(end - o), op.fn, 0,
                              max_retries_, true};
  add_chunk(submits, spec, std::move(args));
  return end - o;
}

void Session::take_submit(Op& op, SubmitBuilder& submits) {
  auto [it, fresh] = jobs_.try_emplace(op.job_id);
  JobRec& rec = it->second;
  if (fresh) rec.job = op.job;
  rec.last = rec.last || op.last;
  for (std::size_t i = 0; i < op.chunks.size();) {
    const std::size_t end = single_task_run(op, i);
    if (end - i > 1) {
      take_task_batch(op, i, end, submits);
      rec.outstanding += end - i;
    } else {
      EncodedChunk& c = op.chunks[i];
      rec.outstanding += c.count;
      const proto::ChunkSpec spec{op.job_id, c.first, c.count, op.fn, op.timeout_ms, max_retries_};
      add_chunk(submits, spec, std::move(c.args));
    }
    i = end;
  }
  if (rec.last && rec.outstanding == 0) jobs_.erase(it);
}

// The end of the run of chunks from op.chunks[i] on that may travel as one batch: chunks
// of one small task each (imap's and map's chunksize 1), for consecutive tasks, with no
// time limit. Returns i + 1 when there is no such run.
std::size_t Session::single_task_run(const Op& op, std::size_t i) const {
  auto small_single = [&](const EncodedChunk& c) {
    return c.count == 1 && c.args.size() <= kMaxBatchedArgs / kMaxCoalesced;
  };
  if (op.timeout_ms != 0 || !small_single(op.chunks[i])) return i + 1;
  std::size_t end = i + 1;
  while (end < op.chunks.size() && end - i < kMaxCoalesced && small_single(op.chunks[end]) &&
         op.chunks[end].first == op.chunks[end - 1].first + 1)
    ++end;
  return end;
}

// op.chunks[i, end), single consecutive tasks of op's job, as one chunk marked
// `coalesced`: the broker hands it out by measured cost as it does a batch of calls, so
// a task still travels on its own when it is expensive (or its cost unknown).
void Session::take_task_batch(Op& op, std::size_t i, std::size_t end, SubmitBuilder& submits) {
  std::size_t bytes = 0;
  for (std::size_t k = i; k < end; ++k) bytes += op.chunks[k].args.size();
  Buffer args(bytes);
  for (std::size_t k = i; k < end; ++k)
    args.write(op.chunks[k].args.data(), op.chunks[k].args.size());
  const proto::ChunkSpec spec{
      op.job_id, op.chunks[i].first, static_cast<std::uint32_t>(end - i), op.fn, 0, max_retries_,
      true};
  add_chunk(submits, spec, std::move(args));
}

void Session::take_fail_all(const WireError& e, std::vector<proto::Message>& out) {
  fail_outstanding(e);
  out.push_back(proto::make(proto::Cmd::cancel, std::vector<int>{}));
  std::lock_guard lock(mu_);
  ++fails_done_;
  cv_.notify_all();
}

// Forgets a job: its tasks without an outcome no longer count as pending, the chunks
// kept for it are dropped, and outcomes that still come for it are ignored. Returns how
// many tasks it had without an outcome.
std::uint64_t Session::drop_job(std::uint64_t job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return 0;
  const std::uint64_t left = it->second.outstanding;
  jobs_.erase(it);
  // A local pool's chunks stay until their outcomes come (deliver): the tasks still run,
  // and read their arguments from the chunks' shared memory.
  if (!keep_sent_) return left;
  for (auto s = sent_.lower_bound({job_id, 0}); s != sent_.end() && s->first.first == job_id;)
    s = sent_.erase(s);
  return left;
}

// Adds a chunk to the SUBMIT under way: its arguments inline, or (a local pool's large
// chunk) as Refs into shared memory that the chunk keeps until each task has its outcome.
void Session::add_chunk(SubmitBuilder& submits, const proto::ChunkSpec& spec, Buffer&& args) {
  const auto size = static_cast<std::int64_t>(args.size());
  shm::ArgSegments::Lease segment;
  // Refs cost 43 bytes a task: not for chunks of many small tasks.
  if (shared_.threshold > 0 && size >= shared_.threshold && size <= shared_.max_message &&
      size >= std::int64_t{1024} * spec.count) {
    try {
      segment = arg_segments_.write(args.data(), args.size(), spec.count);
    } catch (const std::exception& e) {
      log().warn("client: a chunk's arguments travel inline: {}", e.what());
    }
  }
  zmq::message_t& frame =
      submits.add(spec, segment ? segment.frame() : proto::to_frame(std::move(args)));
  keep(spec, frame, std::move(segment));
}

void Session::keep(const proto::ChunkSpec& spec, zmq::message_t& args,
                   shm::ArgSegments::Lease segment) {
  if (!keep_sent_ && !segment) return;
  SentChunk& c = sent_[{spec.job, spec.seq}];
  c.spec = spec;
  c.args.copy(args);  // refcounted: shares the buffer
  c.remaining = spec.count;
  c.segment = std::move(segment);
}

// `fresh` new outcomes arrived for tasks of `job` from `seq` on: they lie inside one sent
// chunk (the broker splits chunks but never merges them).
void Session::answered(std::uint64_t job, std::uint64_t seq, std::uint32_t fresh) {
  auto it = sent_.upper_bound({job, seq});
  if (it == sent_.begin()) return;
  --it;
  if (it->first.first != job || seq >= it->first.second + it->second.spec.count) return;
  it->second.remaining -= std::min(it->second.remaining, fresh);
  if (it->second.remaining == 0) sent_.erase(it);
}

void Session::resubmit(std::vector<proto::Message>& out) {
  SubmitBuilder submits(out, sent_.size());
  for (auto& [seq, c] : sent_) {
    zmq::message_t frame;
    frame.copy(c.args);  // shares the buffer
    submits.add(c.spec, std::move(frame));
  }
  submits.flush();
}

void Session::fail_outstanding(const WireError& e) {
  for (auto& [id, rec] : jobs_) rec.job->fail(e);
  jobs_.clear();
  open_jobs_.store(0, std::memory_order_relaxed);
  sent_.clear();
  std::lock_guard lock(mu_);
  pending_ = 0;
  cv_.notify_all();
}

void Session::drive(const std::function<void()>& loop, ErrorCode code,
                    const std::string& failed) noexcept {
  std::string cause;
  try {
    loop();
    return;
  } catch (...) {
    cause = describe_current_exception("").message;
  }
  log().error("client: {}: {}; unfinished tasks fail", failed, cause);
  break_down(WireError{code, "", failed + ": " + cause, "", ""});
}

// Refuses new work first, then fails what is outstanding: a caller woken by its task's
// failure that submits again is refused, never accepted by a session that is gone.
void Session::break_down(const WireError& e) {
  std::vector<Op> queued;
  {
    std::lock_guard lock(mu_);
    broken_ = std::make_shared<const WireError>(e);
    queued.swap(ops_);
    fail_ops_ = 0;
  }
  fail_outstanding(e);  // sets pending_ to 0 and wakes the waiters
  for (Op& op : queued)
    if (op.kind == Op::submit && op.job) op.job->fail(e);
}

void Session::deliver(proto::Message& m) {
  if (m.cmd != proto::Cmd::result) return;
  // An unreadable header names no task: the message is dropped (the caller logs it).
  const auto specs = proto::decode<std::vector<proto::ResultSpec>>(m);
  if (shared_.threshold > 0) map_shared(m, specs);
  std::uint64_t settled = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const proto::ResultSpec& spec = specs[i];
    auto it = jobs_.find(spec.job);
    if (it == jobs_.end()) {  // forgotten, or failed by terminate
      if (!keep_sent_ && !sent_.empty()) answered(spec.job, spec.seq, spec.count);  // its memory
      continue;
    }
    JobRec& rec = it->second;
    std::uint32_t fresh = 0;
    try {
      if (2 * i + 1 >= m.frames.size())
        throw SerializationError("a result message without the outcome frames of its chunk");
      fresh = deliver_chunk(*rec.job, spec, m.frames[2 * i], m.frames[2 * i + 1]);
    } catch (...) {
      // The job could not take the chunk, and may have taken part of it: it fails as a
      // whole, so that its pending tasks settle (join() must return) with the cause.
      const WireError cause = describe_current_exception("");
      log().error("client: a result for job {} could not be delivered: {}", spec.job,
                  cause.message);
      rec.job->fail(WireError{ErrorCode::serialization, "",
                              "a result could not be delivered: " + cause.message, "", ""});
      settled += drop_job(spec.job);
      if (!keep_sent_ && !sent_.empty()) answered(spec.job, spec.seq, spec.count);
      continue;
    }
    if (!sent_.empty()) answered(spec.job, spec.seq, fresh);
    rec.outstanding -= std::min<std::uint64_t>(rec.outstanding, fresh);
    settled += fresh;
    if (rec.last && rec.outstanding == 0) jobs_.erase(it);
  }
  open_jobs_.store(jobs_.size(), std::memory_order_relaxed);
  settle(settled);
}

// Values that came through an executor's shared memory are mapped in place of their Ref
// before anything reads them: every Ref, whether its job still waits or not, so that
// each segment goes back to its executor. An executor gone before its values were mapped
// (killed just after it answered) took them with it: those tasks fail.
void Session::map_shared(proto::Message& m, const std::vector<proto::ResultSpec>& specs) {
  for (std::size_t i = 0; i < specs.size() && 2 * i + 1 < m.frames.size(); ++i) {
    zmq::message_t& values = m.frames[2 * i + 1];
    if (!shm::is_values_ref(values)) continue;
    try {
      values = shm::map_values(values, shared_.max_message, value_mappings_);
    } catch (const std::exception& e) {
      std::vector<zmq::message_t> failed;
      proto::fail_frames(
          specs[i].count,
          WireError{ErrorCode::worker_lost, "",
                    std::string("worker process lost with its results: ") + e.what(), "", ""},
          failed);
      m.frames[2 * i] = std::move(failed[0]);
      values = std::move(failed[1]);
    }
  }
}

std::uint32_t deliver_chunk(Job& job, const proto::ResultSpec& spec,
                            const zmq::message_t& errors_frame,
                            const zmq::message_t& values_frame) {
  // Each task's value takes at least a byte (nil where it failed), so a larger count is a
  // lie, and it would be believed: below, an unreadable errors frame becomes one row per
  // task (4 billion rows from a count of 2^32 - 1), and a job reads one value per task,
  // failing each past the frame's end with an exception of its own. Found by
  // tests/fuzz/fuzz_values (regressions/fuzz_values).
  if (spec.count > values_frame.size())
    throw SerializationError("a result chunk of " + std::to_string(spec.count) +
                             " tasks whose values frame has " +
                             std::to_string(values_frame.size()) + " bytes");
  ErrorList errors;
  try {
    errors = proto::decode_errors(errors_frame);
  } catch (const SerializationError& e) {
    // Unreadable error list: every task of the chunk fails with that.
    errors.clear();
    for (std::uint32_t k = 0; k < spec.count; ++k)
      errors.emplace_back(k, WireError{ErrorCode::serialization, "", e.what(), "", ""});
  }
  Reader values(values_frame.data(), values_frame.size());
  const std::uint32_t fresh = job.deliver(spec.seq, spec.count, values, errors);
  if (!values.at_end()) log().warn("client: result chunk has trailing bytes; ignored");
  return fresh;
}

void Session::abandon(std::uint64_t job_id) {
  Op op;
  op.kind = Op::abandon;
  op.job_id = job_id;
  if (push(std::move(op))) wake();
}

}  // namespace mqpool::detail

namespace mqpool::detail {

namespace {
std::uint64_t random_session() {
  std::random_device rd;
  return std::uint64_t{rd()} << 32 | rd();
}
}  // namespace

RemoteLink::RemoteLink(zmq::context_t& ctx, Options options, Session& session)
    : options_(std::move(options)),
      sock_(ctx, zmq::socket_type::dealer),
      watch_(ctx, sock_, options_.curve.has_value()),
      session_(session) {
  proto::configure_dealer(sock_, proto::Traffic::work, {}, 0, options_.max_message);
  if (options_.curve) apply_curve(sock_, *options_.curve);
  hello_ = proto::Hello{random_session(), host_pid(),
                        static_cast<std::uint32_t>(options_.heartbeat.count()), options_.liveness};
  try {
    sock_.connect(options_.endpoint);
  } catch (const zmq::error_t& e) {
    throw error(std::string("cannot connect: ") + e.what());
  }
  handshake();
  // Whatever ends the thread early fails every outstanding task with its cause.
  thread_ = std::thread([this] {
    session_.drive([this] { run(); }, ErrorCode::connection,
                   "broker " + options_.endpoint + ": the client's link thread failed");
  });
}

RemoteLink::~RemoteLink() {
  session_.stop();
  thread_.join();
}

WireError RemoteLink::gone() const {
  if (!refused_.empty())
    return WireError{ErrorCode::connection, "", "broker " + options_.endpoint + ": " + refused_, "",
                     ""};
  return WireError{ErrorCode::connection, "",
                   "no broker at " + options_.endpoint + " for more than " +
                       std::to_string(options_.reconnect_timeout.count()) +
                       " ms (PoolOptions::reconnect_timeout)",
                   "", ""};
}

ConnectionError RemoteLink::error(const std::string& what) const {
  return ConnectionError("broker " + options_.endpoint + ": " + what);
}

// ZeroMQ connects in the background and retries for ever; a pool on a wrong address
// should say so instead. WELCOME proves that a broker's client endpoint answered.
void RemoteLink::handshake() {
  send(proto::make(proto::Cmd::hello, hello_));
  const auto deadline = Clock::now() + options_.connect_timeout;
  zmq::pollitem_t items[] = {{sock_.handle(), 0, ZMQ_POLLIN, 0},
                             {watch_.socket().handle(), 0, ZMQ_POLLIN, 0}};
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || zmq::poll(items, 2, left) == 0)
      throw ConnectionError("no broker answered at " + options_.endpoint + " within " +
                            std::to_string(options_.connect_timeout.count()) + " ms");
    if (const std::string why = watch_.refusal(); !why.empty()) throw error(why);
    // Its own recv, not receiver_.drain(): one message per wait. Whatever is malformed,
    // a WELCOME or REFUSED too, is dropped by the one policy, and the wait goes on.
    try {
      std::optional<proto::Message> m = proto::recv(sock_, false, zmq::recv_flags::dontwait);
      if (!m) continue;
      if (m->cmd == proto::Cmd::refused) throw error(proto::decode<proto::Bye>(*m).reason);
      if (m->cmd != proto::Cmd::welcome) continue;
      executors_at_connect_ = proto::decode<proto::Welcome>(*m).executors;
    } catch (const SerializationError& e) {
      receiver_.drop({}, e.what());
      continue;
    }
    welcomed_ = true;
    last_heard_ = Clock::now();
    next_beat_ = last_heard_ + options_.heartbeat;
    return;
  }
}

// Never waits: after a refused handshake the socket has no pipe to the broker, and the
// link thread must go on (what is not sent is resubmitted after the next WELCOME).
void RemoteLink::send(proto::Message&& m) { proto::send(sock_, std::move(m), false, false); }

void RemoteLink::run() {
  zmq::pollitem_t items[] = {{sock_.handle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, session_.wake_fd(), ZMQ_POLLIN, 0},
                             {watch_.socket().handle(), 0, ZMQ_POLLIN, 0}};
  std::vector<proto::Message> out;
  while (true) {
    fault_point("link.run");
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_beat_ - Clock::now());
    try {
      zmq::poll(items, 3, std::max(wait, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      if (e.num() != EINTR) throw;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      if (!session_.take(out, true)) {
        // Leaving: the broker drops this client's work now rather than at its expiry.
        sock_.set(zmq::sockopt::linger, 200);
        if (welcomed_) send(proto::make(proto::Cmd::bye, proto::Bye{"the pool is closing"}));
        return;
      }
      // Unsent while the broker is lost: the chunks are kept and go with the resubmission.
      if (welcomed_)
        for (proto::Message& m : out) send(std::move(m));
      out.clear();
      if (expired_) session_.fail_outstanding(gone());
    }
    if (items[2].revents & ZMQ_POLLIN) on_handshake(Clock::now());
    if (items[0].revents & ZMQ_POLLIN)
      receiver_.drain(
          sock_, false, [this](proto::Message& m) { on_message(m, Clock::now()); }, kDrainBatch);
    beat(Clock::now());
  }
}

void RemoteLink::on_message(proto::Message& m, Clock::time_point now) {
  last_heard_ = now;
  switch (m.cmd) {
    case proto::Cmd::result:
      session_.deliver(m);
      return;
    case proto::Cmd::welcome:
      if (welcomed_) return;  // the answer to a HELLO that an earlier one already had
      welcomed_ = true;
      expired_ = false;
      refused_.clear();
      if (session_.unanswered() > 0) {
        log().info("client: broker {} is back; sending {} unanswered chunks again",
                   options_.endpoint, session_.unanswered());
        std::vector<proto::Message> again;
        session_.resubmit(again);
        for (proto::Message& a : again) send(std::move(a));
      }
      return;
    case proto::Cmd::reset:
      if (welcomed_) lose(now, "it does not know this client (restarted, or dropped it)");
      return;
    case proto::Cmd::bye:
    case proto::Cmd::refused: {
      const std::string reason = proto::decode<proto::Bye>(m).reason;
      log().warn("client: broker {}: {}", options_.endpoint, reason);
      session_.fail_outstanding(WireError{ErrorCode::connection, "",
                                          "broker " + options_.endpoint + ": " + reason, "", ""});
      welcomed_ = false;
      lost_since_ = now;
      return;
    }
    default:
      return;  // HEARTBEAT: its arrival is all it says
  }
}

// A broker that refuses this client's key now (removed from its authorized keys, then
// reconnected) will not take it back by itself: every task fails at once with the
// reason, and so does new work while it lasts, but the client goes on asking.
void RemoteLink::on_handshake(Clock::time_point now) {
  const std::string why = watch_.refusal();
  if (why.empty()) return;
  log().error("client: broker {}: {}", options_.endpoint, why);
  refused_ = why;
  if (welcomed_) lose(now, why);
  expired_ = true;
  session_.fail_outstanding(gone());
}

// The broker is lost: greet it again (it answers once it is back); the unanswered
// chunks go again after its WELCOME.
void RemoteLink::lose(Clock::time_point now, const std::string& why) {
  log().warn("client: lost broker {}: {}; reconnecting", options_.endpoint, why);
  welcomed_ = false;
  lost_since_ = now;
  send(proto::make(proto::Cmd::hello, hello_));
}

// Once per heartbeat interval: a HEARTBEAT while the broker is known, a HELLO while it
// is lost, and the expiries of both.
void RemoteLink::beat(Clock::time_point now) {
  if (now < next_beat_) return;
  next_beat_ = now + options_.heartbeat;
  if (welcomed_ && now - last_heard_ > options_.heartbeat * options_.liveness) {
    lose(now, "no heartbeat for " +
                  std::to_string((options_.heartbeat * options_.liveness).count()) + " ms");
    return;
  }
  if (welcomed_) {
    send(proto::make(proto::Cmd::heartbeat, std::vector<int>{}));
    return;
  }
  send(proto::make(proto::Cmd::hello, hello_));
  if (!expired_ && now - lost_since_ > options_.reconnect_timeout) {
    expired_ = true;
    session_.fail_outstanding(gone());
  }
}

}  // namespace mqpool::detail
