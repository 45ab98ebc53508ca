// Wire protocol v1 without sockets: header encode/decode, routing ids, error frames,
// fail_frames and to_frame.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "common/protocol.hpp"

namespace {

using mqpool::ErrorCode;
using mqpool::SerializationError;
using mqpool::WireError;
namespace proto = mqpool::proto;
using proto::Cmd;

std::string bytes(const zmq::message_t& m) { return std::string(m.data<char>(), m.size()); }

proto::Message with_header(std::string raw) {
  proto::Message m;
  m.header = zmq::message_t(raw.data(), raw.size());
  return m;
}

// --- headers --------------------------------------------------------------------------------

TEST(ProtocolHeaders, SubmitChunkSpecs) {
  const std::vector<proto::ChunkSpec> in{
      {3, 1, 10, "square", 0, 0},
      {std::numeric_limits<std::uint64_t>::max(), std::numeric_limits<std::uint64_t>::max(), 1,
       "a.b", 2500, 7}};
  const auto m = proto::make(Cmd::submit, in, "client-1");
  EXPECT_EQ(m.cmd, Cmd::submit);
  EXPECT_EQ(m.peer, "client-1");
  EXPECT_TRUE(m.frames.empty());
  const auto out = proto::decode<std::vector<proto::ChunkSpec>>(m);
  ASSERT_EQ(out.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(out[i].job, in[i].job);
    EXPECT_EQ(out[i].seq, in[i].seq);
    EXPECT_EQ(out[i].count, in[i].count);
    EXPECT_EQ(out[i].fn, in[i].fn);
    EXPECT_EQ(out[i].timeout_ms, in[i].timeout_ms);
    EXPECT_EQ(out[i].max_retries, in[i].max_retries);
  }
}

TEST(ProtocolHeaders, ResultAndTaskSpecs) {
  const auto r = proto::decode<std::vector<proto::ResultSpec>>(
      proto::make(Cmd::result, std::vector<proto::ResultSpec>{{7, 5, 3}, {1ull << 63, 8, 1}}));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].job, 7u);
  EXPECT_EQ(r[1].job, 1ull << 63);
  EXPECT_EQ(r[0].seq, 5u);
  EXPECT_EQ(r[0].count, 3u);
  EXPECT_EQ(r[1].seq, 8u);
  EXPECT_EQ(r[1].count, 1u);

  const auto t = proto::decode<std::vector<proto::TaskSpec>>(
      proto::make(Cmd::task, std::vector<proto::TaskSpec>{{42, 4, "fn"}}));
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].chunk, 42u);
  EXPECT_EQ(t[0].count, 4u);
  EXPECT_EQ(t[0].fn, "fn");

  const auto ids = proto::decode<std::vector<std::uint64_t>>(
      proto::make(Cmd::done, std::vector<std::uint64_t>{1, 1ull << 50}));
  EXPECT_EQ(ids, (std::vector<std::uint64_t>{1, 1ull << 50}));
  EXPECT_TRUE(proto::decode<std::vector<std::uint64_t>>(
                  proto::make(Cmd::cancel, std::vector<std::uint64_t>{}))
                  .empty());
}

TEST(ProtocolHeaders, ReadyHelloExitedKill) {
  const auto ready =
      proto::decode<proto::Ready>(proto::make(Cmd::ready, proto::Ready{77, 4242, "node-3", 4, 16}));
  EXPECT_EQ(ready.agent, 77u);
  EXPECT_EQ(ready.pid, 4242u);
  EXPECT_EQ(ready.host, "node-3");
  EXPECT_EQ(ready.credit, 4u);
  EXPECT_EQ(ready.max_bundle, 16u);

  const auto hello = proto::decode<proto::AgentHello>(proto::make(
      Cmd::agent_hello, proto::AgentHello{std::uint64_t{1} << 63, 99, "h", {"t"}, 2, 1000, 3}));
  EXPECT_EQ(hello.agent, std::uint64_t{1} << 63);
  EXPECT_EQ(hello.pid, 99u);
  EXPECT_EQ(hello.host, "h");

  const auto exited = proto::decode<proto::Exited>(
      proto::make(Cmd::exited, proto::Exited{123, "killed by signal 9 (SIGKILL)", true}));
  EXPECT_EQ(exited.pid, 123u);
  EXPECT_EQ(exited.reason, "killed by signal 9 (SIGKILL)");
  EXPECT_TRUE(exited.planned);

  EXPECT_EQ(proto::decode<proto::Kill>(proto::make(Cmd::kill, proto::Kill{31337})).pid, 31337u);
}

TEST(ProtocolHeaders, MalformedHeadersThrowSerializationError) {
  EXPECT_THROW(proto::decode<proto::Ready>(with_header("")), SerializationError);
  EXPECT_THROW(proto::decode<proto::Ready>(with_header("\xc1")), SerializationError);
  EXPECT_THROW(proto::decode<proto::Ready>(with_header("\xa3"
                                                       "abc")),
               SerializationError);  // a string
  EXPECT_THROW(proto::decode<std::vector<proto::ChunkSpec>>(with_header("\x93\x01\x02")),
               SerializationError);  // truncated array
  EXPECT_THROW(proto::decode<std::vector<std::uint64_t>>(with_header("\x91\xa1x")),
               SerializationError);  // wrong element type
  EXPECT_THROW(proto::decode<std::vector<proto::ChunkSpec>>(with_header("\xdd\xff\xff\xff\xff")),
               SerializationError);  // 4 G chunks declared in 5 bytes
  // A valid header followed by anything is refused: no bytes may trail.
  auto m = proto::make(Cmd::kill, proto::Kill{1});
  const std::string raw = bytes(m.header) + std::string(1, '\0');
  EXPECT_THROW(proto::decode<proto::Kill>(with_header(raw)), SerializationError);
}

// The hot headers' field-by-field reader (decode_fast) must agree with msgpack's generic
// decoding on every encoding msgpack's packer writes, and give way to it (false) on
// anything else, so that errors and unusual encodings are handled in one place.
template <class H>
H generic(const zmq::message_t& header) {
  const auto h = mqpool::detail::unpack_exact(header.data(), header.size());
  return mqpool::detail::convert<H>(h.get());
}

TEST(ProtocolFastHeaders, AgreeWithTheGenericDecoderAcrossIntegerAndStringWidths) {
  std::vector<proto::ChunkSpec> chunks;
  for (std::uint64_t seq : {0ull, 127ull, 128ull, 65536ull, 1ull << 40, ~0ull})
    for (std::size_t len : {0u, 6u, 31u, 32u, 255u, 256u, 70000u})
      chunks.push_back({~seq, seq, static_cast<std::uint32_t>(len + 1), std::string(len, 'f'),
                        static_cast<std::uint32_t>(seq), 0xffffffffu});
  const auto m = proto::make(Cmd::submit, chunks);
  std::vector<proto::ChunkSpec> fast;
  ASSERT_TRUE(proto::decode_fast(m.header, fast));
  const auto slow = generic<std::vector<proto::ChunkSpec>>(m.header);
  ASSERT_EQ(fast.size(), slow.size());
  for (std::size_t i = 0; i < fast.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(fast[i].job, slow[i].job);
    EXPECT_EQ(fast[i].seq, slow[i].seq);
    EXPECT_EQ(fast[i].count, slow[i].count);
    EXPECT_EQ(fast[i].fn, slow[i].fn);
    EXPECT_EQ(fast[i].timeout_ms, slow[i].timeout_ms);
    EXPECT_EQ(fast[i].max_retries, slow[i].max_retries);
  }

  const std::vector<proto::TaskSpec> tasks{{1, 2, "a"}, {1ull << 33, 70000, std::string(40, 't')}};
  std::vector<proto::TaskSpec> t;
  ASSERT_TRUE(proto::decode_fast(proto::make(Cmd::task, tasks).header, t));
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1].chunk, 1ull << 33);
  EXPECT_EQ(t[1].count, 70000u);
  EXPECT_EQ(t[1].fn, std::string(40, 't'));

  const std::vector<proto::ResultSpec> results{{1ull << 32, 5, 1}, {~0ull, ~0ull, 0xffffffffu}};
  std::vector<proto::ResultSpec> r;
  ASSERT_TRUE(proto::decode_fast(proto::make(Cmd::result, results).header, r));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].job, 1ull << 32);
  EXPECT_EQ(r[1].job, ~0ull);
  EXPECT_EQ(r[1].seq, ~0ull);
  EXPECT_EQ(r[1].count, 0xffffffffu);

  std::vector<std::uint64_t> ids(300);  // array16
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i << (i % 60);
  std::vector<std::uint64_t> got;
  ASSERT_TRUE(proto::decode_fast(proto::make(Cmd::done, ids).header, got));
  EXPECT_EQ(got, ids);
}

TEST(ProtocolFastHeaders, GiveWayOnAnythingElseAndDecodeStillDecides) {
  auto fast_ok = [](const std::string& raw) {
    std::vector<proto::ChunkSpec> out;
    return proto::decode_fast(with_header(raw).header, out);
  };
  // Valid but unusual encodings, which the generic path accepts: the name as bin instead
  // of str, and a spec with five fields (the sixth keeps its default).
  const std::string bin_name(
      "\x91\x96\x00\x01\x02\xc4\x02"
      "ab"
      "\x00\x00",
      11);
  EXPECT_FALSE(fast_ok(bin_name));
  const auto a = proto::decode<std::vector<proto::ChunkSpec>>(with_header(bin_name));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].fn, "ab");
  EXPECT_EQ(a[0].count, 2u);
  const std::string five_fields = "\x91\x95\x04\x01\x03\xa1x\x07";
  EXPECT_FALSE(fast_ok(five_fields));
  const auto b = proto::decode<std::vector<proto::ChunkSpec>>(with_header(five_fields));
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].job, 4u);
  EXPECT_EQ(b[0].timeout_ms, 7u);
  EXPECT_EQ(b[0].max_retries, 0u);
  // Malformed or hostile: refused by the fast path, then by decode() with an error.
  for (const std::string& raw : {
           std::string("\x91\x96\x00\x01\xcf\x00\x00\x00\x01\x00\x00\x00\x00\xa1x\x00\x00",
                       17),                                      // count beyond uint32
           std::string("\x91\x96\x00\xff\x01\xa1x\x00\x00", 9),  // negative seq
           std::string("\x91\x96\xff\x00\x01\xa1x\x00\x00", 9),  // negative job
           std::string("\xdd\xff\xff\xff\xff"),                  // 4 G chunks in 5 bytes
           std::string("\x91\x96\x00\x01\x01\xa5x\x00\x00", 9),  // name longer than the bytes left
           std::string("\x91\x96\x00\x01\x01\xa1x\x00\x00\x00", 10),  // a trailing byte
       }) {
    SCOPED_TRACE(::testing::PrintToString(raw));
    EXPECT_FALSE(fast_ok(raw));
    EXPECT_THROW(proto::decode<std::vector<proto::ChunkSpec>>(with_header(raw)),
                 SerializationError);
  }
}

// --- routing ids ----------------------------------------------------------------------------

TEST(ProtocolIds, ExecutorAndAgentIdsAreDistinctAndStable) {
  const std::string e = proto::executor_id(7, 1234);
  EXPECT_EQ(e.size(), 13u);
  EXPECT_EQ(e[0], 'E');
  EXPECT_EQ(e, proto::executor_id(7, 1234));
  std::uint64_t agent = 0;
  std::uint32_t pid = 0;
  std::memcpy(&agent, e.data() + 1, sizeof agent);
  std::memcpy(&pid, e.data() + 9, sizeof pid);
  EXPECT_EQ(agent, 7u);
  EXPECT_EQ(pid, 1234u);

  const std::string a = proto::agent_id(7);
  EXPECT_EQ(a.size(), 9u);
  EXPECT_EQ(a[0], 'A');
  EXPECT_EQ(a.substr(1), e.substr(1, 8));  // an executor's id embeds its agent's

  std::set<std::string> ids;
  for (std::uint64_t ag : {0ull, 1ull, 256ull, ~0ull})
    for (std::uint32_t p : {0u, 1u, 65536u, ~0u}) ids.insert(proto::executor_id(ag, p));
  EXPECT_EQ(ids.size(), 16u);
  EXPECT_NE(proto::agent_id(1), proto::agent_id(2));
}

// --- error frames ---------------------------------------------------------------------------

TEST(ProtocolErrors, EncodeDecodeRoundTrip) {
  const std::vector<std::pair<std::uint32_t, WireError>> in{
      {0, {ErrorCode::task, "std::runtime_error", "boom", "fn", "host:1"}},
      {3, {ErrorCode::timeout, "", "ran past 5 ms", "slow", "host:2"}},
      {9, {ErrorCode::worker_lost, "", "killed by signal 9", "fn", ""}},
      {4000000000u, {ErrorCode::initializer, "x::Y", std::string("a\0b", 3), "", "h:3"}}};
  const zmq::message_t frame = proto::encode_errors(in);
  EXPECT_GT(frame.size(), 0u);
  const auto out = proto::decode_errors(frame);
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(out[i].first, in[i].first);
    EXPECT_EQ(out[i].second.code, in[i].second.code);
    EXPECT_EQ(out[i].second.type, in[i].second.type);
    EXPECT_EQ(out[i].second.message, in[i].second.message);
    EXPECT_EQ(out[i].second.task, in[i].second.task);
    EXPECT_EQ(out[i].second.worker, in[i].second.worker);
  }
}

TEST(ProtocolErrors, NoErrorsIsAnEmptyFrame) {
  const zmq::message_t frame = proto::encode_errors({});
  EXPECT_EQ(frame.size(), 0u);
  EXPECT_TRUE(proto::decode_errors(frame).empty());
  EXPECT_TRUE(proto::decode_errors(zmq::message_t()).empty());
}

TEST(ProtocolErrors, MalformedErrorFramesThrowSerializationError) {
  const std::string garbage("\xc1\x00", 2);
  EXPECT_THROW(proto::decode_errors(zmq::message_t(garbage.data(), garbage.size())),
               SerializationError);
  const std::string not_rows =
      "\x91\xa3"
      "abc";  // [ "abc" ]
  EXPECT_THROW(proto::decode_errors(zmq::message_t(not_rows.data(), not_rows.size())),
               SerializationError);
  zmq::message_t good = proto::encode_errors({{1, {ErrorCode::task, "t", "m", "f", "w"}}});
  std::string trailing = bytes(good) + "\xc0";
  EXPECT_THROW(proto::decode_errors(zmq::message_t(trailing.data(), trailing.size())),
               SerializationError);
}

TEST(ProtocolErrors, FailFramesGivesCountErrorsAndCountNils) {
  const WireError e{ErrorCode::worker_lost, "", "worker process lost: exited with code 3", "fn",
                    ""};
  std::vector<zmq::message_t> out;
  out.emplace_back(std::string_view("already here"));
  proto::fail_frames(3, e, out);
  ASSERT_EQ(out.size(), 3u);  // appended, the existing frame kept
  EXPECT_EQ(bytes(out[0]), "already here");
  const auto errors = proto::decode_errors(out[1]);
  ASSERT_EQ(errors.size(), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(errors[i].first, i);
    EXPECT_EQ(errors[i].second.code, ErrorCode::worker_lost);
    EXPECT_EQ(errors[i].second.message, e.message);
    EXPECT_EQ(errors[i].second.task, "fn");
  }
  mqpool::detail::Reader values(out[2].data(), out[2].size());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(values.next().is_nil());
  EXPECT_NO_THROW(values.expect_end());
}

TEST(ProtocolErrors, FailFramesForAnEmptyChunkAreTwoEmptyFrames) {
  std::vector<zmq::message_t> out;
  proto::fail_frames(0, WireError{}, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].size(), 0u);
  EXPECT_EQ(out[1].size(), 0u);
}

TEST(ProtocolFrames, ToFrameKeepsTheBytes) {
  mqpool::detail::Buffer buf;
  msgpack::pack(buf, std::string(5000, 'k'));
  const std::string expected(buf.data(), buf.size());
  const zmq::message_t frame = proto::to_frame(std::move(buf));
  EXPECT_EQ(bytes(frame), expected);
  EXPECT_EQ(proto::to_frame(mqpool::detail::Buffer()).size(), 0u);
}

TEST(ProtocolFrames, EncodeIsPlainMsgpack) {
  const zmq::message_t f = proto::encode(proto::Kill{5});
  EXPECT_EQ(bytes(f), std::string("\x91\x05"));  // [5]: MSGPACK_DEFINE packs an array
}

}  // namespace
