#include "session.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include "log.hpp"

namespace mqpool::detail {

namespace {
constexpr std::size_t kChunksPerSubmit = 4096;  // one SUBMIT message carries at most this
constexpr int kDrainBatch = 256;

std::uint64_t seq_of(std::uint64_t job_id, std::uint64_t index) { return job_id << 32 | index; }

// Single tasks waiting together (apply_async in a loop) travel as one chunk, marked
// `coalesced`: one record, one frame and one outcome frame per batch in the broker and
// the executor instead of per task (apply_async_tiny: +39 %, interleaved A/B). The broker
// hands such a chunk out in pieces sized to the measured cost, so expensive calls still
// spread over the executors. The batch's job hands each outcome to its caller's job.
constexpr std::size_t kMaxCoalesced = 64;
// Batch job ids have the top bit of a job id's 32 set; the pool's own job ids stay below.
constexpr std::uint64_t kBatchIds = std::uint64_t{1} << 31;

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

Session::Session(std::uint32_t max_retries, bool coalesce)
    : max_retries_(max_retries), coalesce_(coalesce) {
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
  if (op.kind == Op::submit)
    for (const auto& c : op.chunks) pending_ += c.count;
  else
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
  cv_.wait(lock, [&] { return fails_done_ >= ticket || stop_; });
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
  const std::size_t batch = std::min(waiting, kChunksPerSubmit);  // sized once, not grown
  std::vector<proto::ChunkSpec> specs;
  proto::Message msg;
  auto start = [&] {
    msg = proto::Message{};
    msg.cmd = proto::Cmd::submit;
    specs.reserve(batch);
    msg.frames.reserve(batch);
  };
  auto flush = [&] {
    if (specs.empty()) return;
    msg.header = proto::encode(specs);
    out.push_back(std::move(msg));
    specs.clear();
    start();
  };
  start();
  for (std::size_t o = 0; o < ops_taken_.size(); ++o) {
    Op& op = ops_taken_[o];
    if (coalesce_ && single(op)) {
      std::size_t end = o + 1;
      while (end < ops_taken_.size() && end - o < kMaxCoalesced && single(ops_taken_[end]) &&
             ops_taken_[end].fn == op.fn)
        ++end;
      if (end - o > 1) {
        std::vector<std::shared_ptr<Job>> members;
        Buffer args(64 * (end - o));
        for (std::size_t k = o; k < end; ++k) {
          members.push_back(std::move(ops_taken_[k].job));
          const Buffer& b = ops_taken_[k].chunks[0].args;
          args.write(b.data(), b.size());
        }
        const std::uint64_t batch_id = kBatchIds | (next_batch_++ % kBatchIds);
        JobRec& rec = jobs_[batch_id];
        rec.job = std::make_shared<FanOutJob>(std::move(members));
        rec.outstanding = end - o;
        rec.last = true;
        specs.push_back({seq_of(batch_id, 0), static_cast<std::uint32_t>(end - o), op.fn, 0,
                         max_retries_, true});
        msg.frames.push_back(proto::to_frame(std::move(args)));
        if (specs.size() == kChunksPerSubmit) flush();
        o = end - 1;  // the loop's ++o moves past the batch
        continue;
      }
    }
    if (op.kind == Op::fail_all) {
      flush();
      for (auto& [id, rec] : jobs_) rec.job->fail(*op.error);
      jobs_.clear();
      out.push_back(proto::make(proto::Cmd::cancel, std::vector<int>{}));
      std::lock_guard lock(mu_);
      pending_ = 0;
      ++fails_done_;
      cv_.notify_all();
      continue;
    }
    auto [it, fresh] = jobs_.try_emplace(op.job_id);
    JobRec& rec = it->second;
    if (fresh) rec.job = op.job;
    rec.last = rec.last || op.last;
    for (EncodedChunk& c : op.chunks) {
      rec.outstanding += c.count;
      specs.push_back({seq_of(op.job_id, c.first), c.count, op.fn, op.timeout_ms, max_retries_});
      msg.frames.push_back(proto::to_frame(std::move(c.args)));
      if (specs.size() == kChunksPerSubmit) flush();
    }
    if (rec.last && rec.outstanding == 0) jobs_.erase(it);
  }
  flush();
  ops_taken_.clear();
  return true;
}

void Session::deliver(proto::Message& m) {
  if (m.cmd != proto::Cmd::result) return;
  auto specs = proto::decode<std::vector<proto::ResultSpec>>(m);
  if (m.frames.size() != 2 * specs.size()) throw SerializationError("result: frame count");
  std::uint64_t settled = 0;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const std::uint64_t job_id = specs[i].seq >> 32;
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) continue;  // forgotten, or failed by terminate
    JobRec& rec = it->second;
    const std::uint64_t first = specs[i].seq & 0xffffffffu;
    ErrorList errors;
    try {
      errors = proto::decode_errors(m.frames[2 * i]);
    } catch (const SerializationError& e) {
      // Unreadable error list: every task of the chunk fails with that.
      errors.clear();
      for (std::uint32_t k = 0; k < specs[i].count; ++k)
        errors.emplace_back(k, WireError{ErrorCode::serialization, "", e.what(), "", ""});
    }
    Reader values(m.frames[2 * i + 1].data(), m.frames[2 * i + 1].size());
    const std::uint32_t fresh = rec.job->deliver(first, specs[i].count, values, errors);
    if (!values.at_end()) log().warn("client: result chunk has trailing bytes; ignored");
    rec.outstanding -= std::min<std::uint64_t>(rec.outstanding, fresh);
    settled += fresh;
    if (rec.last && rec.outstanding == 0) jobs_.erase(it);
  }
  settle(settled);
}

}  // namespace mqpool::detail

namespace mqpool::detail {

RemoteLink::RemoteLink(zmq::context_t& ctx, const std::string& endpoint, Session& session,
                       std::chrono::milliseconds connect_timeout)
    : sock_(ctx, zmq::socket_type::dealer), session_(session) {
  sock_.set(zmq::sockopt::sndhwm, 0);
  sock_.set(zmq::sockopt::rcvhwm, 0);
  sock_.set(zmq::sockopt::linger, 0);
  sock_.set(zmq::sockopt::maxmsgsize, proto::kMaxMessageSize);
  // ZeroMQ connects in the background and retries for ever; a pool on a wrong address
  // should say so instead. The socket monitor reports the finished ZMTP handshake.
  const std::string addr = "inproc://mqpool-monitor-" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
  if (zmq_socket_monitor(sock_.handle(), addr.c_str(), ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0)
    throw zmq::error_t();
  zmq::socket_t mon(ctx, zmq::socket_type::pair);
  mon.set(zmq::sockopt::linger, 0);
  mon.connect(addr);
  try {
    sock_.connect(endpoint);
  } catch (const zmq::error_t& e) {
    throw ConnectionError("cannot connect to broker " + endpoint + ": " + e.what());
  }
  zmq::pollitem_t item{mon.handle(), 0, ZMQ_POLLIN, 0};
  const bool ok = zmq::poll(&item, 1, connect_timeout) > 0;
  zmq_socket_monitor(sock_.handle(), nullptr, 0);
  if (!ok)
    throw ConnectionError("no broker answered at " + endpoint + " within " +
                          std::to_string(connect_timeout.count()) + " ms");
  thread_ = std::thread([this] { run(); });
}

RemoteLink::~RemoteLink() {
  session_.stop();
  thread_.join();
}

void RemoteLink::run() {
  zmq::pollitem_t items[] = {{sock_.handle(), 0, ZMQ_POLLIN, 0},
                             {nullptr, session_.wake_fd(), ZMQ_POLLIN, 0}};
  std::vector<proto::Message> out;
  while (true) {
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) return;
      if (e.num() != EINTR) throw;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      if (!session_.take(out, true)) return;
      for (proto::Message& m : out) proto::send(sock_, std::move(m), false);
      out.clear();
    }
    if (items[0].revents & ZMQ_POLLIN) {
      for (int i = 0; i < kDrainBatch; ++i) {
        try {
          std::optional<proto::Message> m = proto::recv(sock_, false, zmq::recv_flags::dontwait);
          if (!m) break;
          session_.deliver(*m);
        } catch (const SerializationError& e) {
          log().warn("client: dropped a malformed message from the broker: {}", e.what());
        }
      }
    }
  }
}

}  // namespace mqpool::detail
