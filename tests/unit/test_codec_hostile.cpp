// Hostile bytes against the codec: random and mutated-valid buffers from a fixed-seed
// generator. Decoding must either succeed or throw SerializationError, never anything
// else, never crash (run under ASan/UBSan in CI to catch overreads).
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "mqpool/codec.hpp"

namespace {

using mqpool::SerializationError;
using mqpool::detail::convert;
using mqpool::detail::object_sizes;
using mqpool::detail::Packer;
using mqpool::detail::Reader;
using mqpool::detail::unpack_exact;

struct Item {
  std::int64_t id = 0;
  std::string name;
  std::vector<double> values;
  std::map<std::string, int> attrs;
  MSGPACK_DEFINE(id, name, values, attrs)
};

// mt19937_64's sequence is fixed by the standard, so this is the same on every platform;
// std::uniform_*_distribution are not, hence the plain modulo.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : gen_(seed) {}
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : gen_() % n; }
  char byte() {
    // Half of the time a byte that means something to msgpack: length headers, markers.
    static constexpr unsigned char kInteresting[] = {
        0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xd4, 0xd8, 0xd9, 0xda,
        0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xff};
    if (gen_() % 2 == 0) return static_cast<char>(kInteresting[below(sizeof kInteresting)]);
    return static_cast<char>(gen_() & 0xff);
  }

 private:
  std::mt19937_64 gen_;
};

std::vector<std::string> valid_corpus() {
  std::vector<std::string> corpus;
  auto add = [&corpus](const auto&... values) {
    mqpool::detail::Buffer buf;
    Packer packer(buf);
    (packer.pack(values), ...);
    corpus.emplace_back(buf.data(), buf.size());
  };
  add(1);
  add(std::string("hello"), -5, 3.25);
  add(std::vector<int>{1, 2, 3, 70000, -70000});
  add(std::make_tuple(std::uint64_t{1} << 40, std::string(40, 'x'), true));
  add(std::map<std::string, std::vector<int>>{{"a", {1}}, {"bb", {}}, {"c", {2, 3}}});
  add(Item{7, "item", {0.5, 1e300}, {{"k", 1}, {"l", 2}}}, Item{});
  add(std::vector<Item>(3, Item{-1, std::string(300, 'y'), {1.5}, {{"z", 9}}}));
  add(std::vector<std::vector<std::vector<int>>>{{{1}, {2, 3}}, {}, {{}}});
  add(std::string(70000, 'q'));  // str32
  return corpus;
}

std::string mutate(const std::string& in, Rng& rng) {
  std::string s = in;
  const auto rounds = 1 + rng.below(4);
  for (std::uint64_t r = 0; r < rounds; ++r) {
    switch (rng.below(6)) {
      case 0:  // overwrite one byte
        if (!s.empty()) s[rng.below(s.size())] = rng.byte();
        break;
      case 1:  // flip one bit
        if (!s.empty()) s[rng.below(s.size())] ^= static_cast<char>(1u << rng.below(8));
        break;
      case 2:  // truncate
        s.resize(rng.below(s.size() + 1));
        break;
      case 3:  // insert a few bytes
        for (auto n = rng.below(5); n > 0; --n)
          s.insert(s.begin() + static_cast<std::ptrdiff_t>(rng.below(s.size() + 1)), rng.byte());
        break;
      case 4:  // duplicate a region
        if (!s.empty()) {
          const auto from = rng.below(s.size());
          s += s.substr(from, rng.below(32));
        }
        break;
      default:  // overwrite a 4-byte length field with a large value
        if (s.size() > 5) {
          const auto at = rng.below(s.size() - 4);
          for (int i = 0; i < 4; ++i)
            s[at + static_cast<std::size_t>(i)] = i == 0 ? '\x7f' : '\xff';
        }
    }
  }
  return s;
}

struct Tally {
  std::size_t ok = 0, rejected = 0;
};

// Every decode path on `bytes`; returns a description of the first foreign exception.
std::string exercise(const std::string& bytes, Rng& rng, Tally& tally) {
  try {
    try {
      Reader reader(bytes.data(), bytes.size());
      for (int i = 0; i < 64 && !reader.at_end(); ++i) {
        const msgpack::object& o = reader.next();
        // Conversions of hostile objects are the next thing a worker does with them.
        try {
          (void)convert<std::vector<int>>(o);
        } catch (const SerializationError&) {
        }
        try {
          (void)convert<std::tuple<int, std::string>>(o);
        } catch (const SerializationError&) {
        }
        try {
          (void)convert<Item>(o);
        } catch (const SerializationError&) {
        }
        try {
          (void)convert<std::map<std::string, int>>(o);
        } catch (const SerializationError&) {
        }
      }
      reader.expect_end();
      ++tally.ok;
    } catch (const SerializationError&) {
      ++tally.rejected;
    }
    try {
      (void)unpack_exact(bytes.data(), bytes.size());
    } catch (const SerializationError&) {
    }
    try {
      (void)object_sizes(bytes.data(), bytes.size(), rng.below(6));
    } catch (const SerializationError&) {
    }
  } catch (const std::exception& e) {
    return std::string("std::exception: ") + e.what();
  } catch (...) {
    return "a non-standard exception";
  }
  return {};
}

// The first object of `bytes` as msgpack's own parser reads it, with the limits the
// Reader documents (elements bounded by the bytes, depth 64), re-packed for comparison
// (NaN != NaN as objects, but not as bytes); empty if it refuses the bytes.
std::optional<std::pair<std::string, std::size_t>> reference_first(const std::string& bytes) {
  const std::size_t n = bytes.size();
  std::size_t off = 0;
  try {
    auto h = msgpack::unpack(bytes.data(), n, off, nullptr, nullptr,
                             msgpack::unpack_limit(n, n / 2, n, n, n, 64));
    mqpool::detail::Buffer buf;
    msgpack::pack(buf, h.get());
    return std::make_pair(std::string(buf.data(), buf.size()), off);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::optional<std::pair<std::string, std::size_t>> reader_first(const std::string& bytes) {
  Reader reader(bytes.data(), bytes.size());
  try {
    const msgpack::object& o = reader.next();
    mqpool::detail::Buffer buf;
    msgpack::pack(buf, o);
    return std::make_pair(std::string(buf.data(), buf.size()), reader.offset());
  } catch (const SerializationError&) {
    return std::nullopt;
  }
}

std::string hex(const std::string& s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < 64; ++i) {
    out += kDigits[(static_cast<unsigned char>(s[i]) >> 4) & 0xf];
    out += kDigits[static_cast<unsigned char>(s[i]) & 0xf];
  }
  return s.size() > 64 ? out + "..." : out;
}

TEST(CodecHostile, RandomAndMutatedBuffersOnlyEverThrowSerializationError) {
  constexpr int kBuffers = 20000;
  Rng rng(0x6d71706f6f6cULL);  // fixed seed: a failure reproduces
  const auto corpus = valid_corpus();
  Tally tally;
  int foreign = 0, differ = 0;
  for (int i = 0; i < kBuffers; ++i) {
    std::string bytes;
    if (i % 2 == 0) {
      bytes.resize(rng.below(97));
      for (char& c : bytes) c = rng.byte();
    } else {
      bytes = mutate(corpus[rng.below(corpus.size())], rng);
    }
    const std::string problem = exercise(bytes, rng, tally);
    if (!problem.empty() && ++foreign <= 5)
      ADD_FAILURE() << "buffer " << i << " (" << hex(bytes) << "): " << problem;
    // The Reader's own fast path must accept and read exactly what msgpack does.
    if (problem.empty() && reader_first(bytes) != reference_first(bytes) && ++differ <= 5)
      ADD_FAILURE() << "buffer " << i << " (" << hex(bytes) << ") decodes unlike msgpack";
  }
  EXPECT_EQ(foreign, 0);
  EXPECT_EQ(differ, 0);
  // The generator must reach both outcomes, or the loop proves little.
  EXPECT_GT(tally.ok, 500u);
  EXPECT_GT(tally.rejected, 5000u);
}

TEST(CodecHostile, UnmutatedCorpusDecodesCleanly) {
  for (const auto& bytes : valid_corpus()) {
    Reader reader(bytes.data(), bytes.size());
    while (!reader.at_end()) EXPECT_NO_THROW(reader.next());
    EXPECT_NO_THROW(reader.expect_end());
  }
}

}  // namespace
