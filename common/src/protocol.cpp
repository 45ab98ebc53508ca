#include "common/protocol.hpp"

#include <cstdlib>
#include <cstring>

#include "common/fault.hpp"
#include "common/log.hpp"

namespace mqpool::proto {

namespace {
struct WireErrorRow {
  std::uint32_t index = 0;
  std::uint8_t code = 0;
  std::string type, message, task, worker;
  MSGPACK_DEFINE(index, code, type, message, task, worker)
};

bool known(std::uint8_t c) {
  switch (static_cast<Cmd>(c)) {
    case Cmd::submit:
    case Cmd::result:
    case Cmd::cancel:
    case Cmd::hello:
    case Cmd::welcome:
    case Cmd::bye:
    case Cmd::reset:
    case Cmd::status:
    case Cmd::refused:
    case Cmd::leaving:
    case Cmd::ready:
    case Cmd::task:
    case Cmd::done:
    case Cmd::agent_hello:
    case Cmd::exited:
    case Cmd::kill:
    case Cmd::heartbeat:
      return true;
  }
  return false;
}
}  // namespace

std::string executor_id(std::uint64_t agent, std::uint32_t pid) {
  std::string id(1 + sizeof agent + sizeof pid, 'E');
  std::memcpy(id.data() + 1, &agent, sizeof agent);
  std::memcpy(id.data() + 1 + sizeof agent, &pid, sizeof pid);
  return id;
}

std::string agent_id(std::uint64_t agent) {
  std::string id(1 + sizeof agent, 'A');
  std::memcpy(id.data() + 1, &agent, sizeof agent);
  return id;
}

zmq::message_t to_frame(detail::Buffer&& buf) {
  const std::size_t size = buf.size();
  // Small frames are copied into ZeroMQ's inline storage: cheaper than the refcount block
  // that a zero-copy frame needs.
  if (size <= 64) return zmq::message_t(buf.data(), size);
  const auto r = buf.release();  // ZeroMQ frees it once sent
  return zmq::message_t(r.data, r.size, r.free, r.hint);
}

namespace {

// One header field, read in place; false if it is not the expected type or range.
struct Field {
  detail::Reader& r;
  template <detail::plain_integer T>
  bool operator()(T& v) const {
    return r.next_integer(v);
  }
  bool operator()(bool& b) const { return r.next_bool(b); }
  bool operator()(std::string& s) const {
    std::string_view v;
    if (!r.next_str(v)) return false;
    s.assign(v);
    return true;
  }
};

// An array of `fields`-element arrays (0: of plain integers), each read by `one`.
template <class T, class One>
bool read_array(const zmq::message_t& h, std::vector<T>& out, std::uint32_t fields, One one) {
  detail::Reader r(h.data(), h.size());
  std::uint32_t n = 0;
  // Every element takes at least 1 + fields bytes: a count beyond that is a lie (and
  // must not size a vector); the generic path rejects it.
  if (!r.next_array_header(n) || n > (h.size() - r.offset()) / (1 + fields)) return false;
  out.resize(n);
  for (T& x : out) {
    std::uint32_t k = 0;
    if (fields != 0 && (!r.next_array_header(k) || k != fields)) return false;
    if (!one(Field{r}, x)) return false;
  }
  return r.at_end();
}

}  // namespace

bool decode_fast(const zmq::message_t& h, std::vector<ChunkSpec>& out) {
  return read_array(h, out, 7, [](Field f, ChunkSpec& c) {
    return f(c.job) && f(c.seq) && f(c.count) && f(c.fn) && f(c.timeout_ms) && f(c.max_retries) &&
           f(c.coalesced);
  });
}
bool decode_fast(const zmq::message_t& h, std::vector<TaskSpec>& out) {
  return read_array(h, out, 3,
                    [](Field f, TaskSpec& t) { return f(t.chunk) && f(t.count) && f(t.fn); });
}
bool decode_fast(const zmq::message_t& h, std::vector<ResultSpec>& out) {
  return read_array(h, out, 3,
                    [](Field f, ResultSpec& r) { return f(r.job) && f(r.seq) && f(r.count); });
}
bool decode_fast(const zmq::message_t& h, std::vector<std::uint64_t>& out) {
  return read_array(h, out, 0, [](Field f, std::uint64_t& v) { return f(v); });
}

zmq::message_t encode_errors(const std::vector<std::pair<std::uint32_t, WireError>>& errors) {
  if (errors.empty()) return zmq::message_t();
  std::vector<WireErrorRow> rows;
  rows.reserve(errors.size());
  for (const auto& [i, e] : errors)
    rows.push_back({i, static_cast<std::uint8_t>(e.code), e.type, e.message, e.task, e.worker});
  return encode(rows);
}

std::uint32_t error_count(const zmq::message_t& frame) {
  const auto* p = frame.data<unsigned char>();
  const std::size_t n = frame.size();
  if (n == 0) return 0;
  if ((p[0] & 0xf0) == 0x90) return p[0] & 0x0f;  // fixarray
  if (p[0] == 0xdc && n >= 3) return std::uint32_t{p[1]} << 8 | p[2];
  if (p[0] == 0xdd && n >= 5)
    return std::uint32_t{p[1]} << 24 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 8 | p[4];
  return 0;
}

std::vector<std::pair<std::uint32_t, WireError>> decode_errors(const zmq::message_t& frame) {
  std::vector<std::pair<std::uint32_t, WireError>> out;
  if (frame.empty()) return out;
  auto h = detail::unpack_exact(frame.data(), frame.size());
  for (auto& r : detail::convert<std::vector<WireErrorRow>>(h.get())) {
    WireError e{static_cast<ErrorCode>(r.code), std::move(r.type), std::move(r.message),
                std::move(r.task), std::move(r.worker)};
    out.emplace_back(r.index, std::move(e));
  }
  return out;
}

void fail_frames(std::uint32_t count, const WireError& e, std::vector<zmq::message_t>& out) {
  std::vector<std::pair<std::uint32_t, WireError>> errors;
  errors.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) errors.emplace_back(i, e);
  out.push_back(encode_errors(errors));
  std::string nils(count, '\xc0');  // msgpack nil per task
  out.emplace_back(nils.data(), nils.size());
}

namespace {
// One part of a message. A signal that interrupts the send (EINTR) is no failure: the
// part is sent again (a failed send leaves the part, and the message so far, as it was).
template <class Part>
bool send_part(zmq::socket_t& s, Part&& part, zmq::send_flags flags) {
  while (true) {
    try {
      detail::fault_point("proto.send");
      return s.send(std::forward<Part>(part), flags).has_value();
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
  }
}
}  // namespace

bool send(zmq::socket_t& s, Message&& m, bool routed, bool wait) {
  const auto nowait = wait ? zmq::send_flags::none : zmq::send_flags::dontwait;
  const auto more = zmq::send_flags::sndmore | nowait;
  try {
    if (routed && !send_part(s, zmq::buffer(m.peer), more)) return false;
    // Without `wait`, only the first part can find no room: the rest follow it.
    if (!send_part(s, zmq::buffer(kTag), more)) return false;
    const auto cmd = static_cast<std::uint8_t>(m.cmd);
    send_part(s, zmq::buffer(&cmd, 1), more);
    send_part(s, m.header, m.frames.empty() ? nowait : more);
    for (std::size_t i = 0; i < m.frames.size(); ++i)
      send_part(s, m.frames[i], i + 1 == m.frames.size() ? nowait : more);
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return false;
    throw;
  }
  return true;
}

namespace {
// A constant, not a function-local static made on first use: a pool's agent is forked
// while the program's other threads run, and a child forked while one of them was
// making such a static waits for ever on its guard (gdb found a second pool's agent and
// executor stuck in __cxa_guard_acquire here).
constexpr std::string_view kNotOurs = "not an MQP2 message";
static_assert(kNotOurs.substr(7, kTag.size()) == kTag);

// Reads every part of one message into `m` (the peer too, malformed or not); false when
// nothing is waiting. Returns in `why` what is wrong with the envelope, or nothing.
bool read(zmq::socket_t& s, bool routed, zmq::recv_flags flags, Message& m, std::string_view& why) {
  zmq::message_t first;
  if (!s.recv(first, flags)) return false;
  // Every part is read before any check, so that a malformed message is consumed whole.
  // The payload frames go straight into the message: a DONE or RESULT carries two per
  // chunk, up to 128 and more.
  zmq::message_t envelope[4];  // routing id, tag, command, header (as many as there are)
  const std::size_t base = routed ? 1 : 0;
  std::size_t n = 0;
  bool more = first.more();
  envelope[n++] = std::move(first);
  while (more && n < base + 3) {
    (void)s.recv(envelope[n]);
    more = envelope[n++].more();
  }
  m.frames.reserve(more ? 8 : 0);
  while (more) {
    (void)s.recv(m.frames.emplace_back());
    more = m.frames.back().more();
  }
  if (routed) m.peer = envelope[0].to_string();
  if (n < base + 3 || envelope[base].to_string_view() != kTag) {
    why = kNotOurs;
  } else if (envelope[base + 1].size() != 1 || !known(*envelope[base + 1].data<std::uint8_t>())) {
    why = "unknown command";
  } else {
    why = {};
    m.cmd = static_cast<Cmd>(*envelope[base + 1].data<std::uint8_t>());
    m.header = std::move(envelope[base + 2]);
  }
  return true;
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes.size());
  for (const unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
}
}  // namespace

std::optional<Message> recv(zmq::socket_t& s, bool routed, zmq::recv_flags flags) {
  Message m;
  std::string_view why;
  if (!read(s, routed, flags, m, why)) return std::nullopt;
  if (!why.empty()) throw SerializationError(std::string(why));
  return m;
}

Receiver::Receiver(std::string who, std::string from, std::uint64_t* counter, Others others)
    : who_(std::move(who)), from_(std::move(from)), counter_(counter), others_(others) {}

Receiver::Got Receiver::take(zmq::socket_t& s, bool routed, Message& m) {
  std::string_view why;
  try {
    if (!read(s, routed, zmq::recv_flags::dontwait, m, why)) return Got::nothing;
  } catch (const zmq::error_t&) {
    throw;
  } catch (const std::exception& e) {
    if (others_ == Others::propagate) throw;
    fail(m.peer, e.what());
    return Got::dropped;
  }
  if (why.empty()) return Got::message;
  drop(m.peer, why);
  return Got::dropped;
}

void Receiver::drop(std::string_view peer, std::string_view reason) {
  if (counter_ != nullptr) ++*counter_;
  note(false, "dropped a malformed message from", peer, reason);
}

void Receiver::fail(std::string_view peer, std::string_view what) {
  if (counter_ != nullptr) ++*counter_;
  note(true, "failed to handle a message from", peer, what);
}

// The rate limit: at most kLogBurst lines in a window of kLogWindow, which begins with
// the first line logged after the last window ended.
void Receiver::note(bool error, std::string_view what, std::string_view peer,
                    std::string_view reason) {
  const auto now = std::chrono::steady_clock::now();
  if (lines_ > 0 && now - window_ >= kLogWindow) lines_ = 0;
  if (lines_ == kLogBurst) {
    ++unlogged_;
    return;
  }
  if (lines_++ == 0) window_ = now;
  std::string line = who_ + ": " + std::string(what) + " " + from_;
  if (!peer.empty()) line += " (id " + hex(peer) + ")";
  line += ": " + std::string(reason);
  if (unlogged_ > 0) line += " (" + std::to_string(unlogged_) + " more not logged before this)";
  unlogged_ = 0;
  if (lines_ == kLogBurst)
    line += " (the next are counted, not logged, for up to " + std::to_string(kLogWindow.count()) +
            " s)";
  if (error)
    detail::log().error("{}", line);
  else
    detail::log().warn("{}", line);
}

namespace {
// Traffic::work's high-water marks, the same at both ends of a connection.
void set_work_limits(zmq::socket_t& s) {
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
}
}  // namespace

void configure_router(zmq::socket_t& s, Handover handover, std::int64_t max_message) {
  s.set(zmq::sockopt::router_mandatory, 1);
  s.set(zmq::sockopt::router_handover, handover == Handover::yes ? 1 : 0);
  set_work_limits(s);
  s.set(zmq::sockopt::maxmsgsize, max_message);
  s.set(zmq::sockopt::linger, 0);
}

void configure_dealer(zmq::socket_t& s, Traffic traffic, const std::string& routing_id,
                      std::optional<int> linger_ms, std::int64_t max_message) {
  if (!routing_id.empty()) s.set(zmq::sockopt::routing_id, routing_id);
  if (traffic == Traffic::work) set_work_limits(s);
  s.set(zmq::sockopt::maxmsgsize, max_message);
  if (linger_ms) s.set(zmq::sockopt::linger, *linger_ms);
  s.set(zmq::sockopt::reconnect_ivl_max, 5000);  // ms: the back-off's ceiling
}

}  // namespace mqpool::proto
