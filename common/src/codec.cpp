#include "mqpool/codec.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>

namespace mqpool::detail {

namespace {
constexpr std::size_t kMaxDepth = 64;

// Strings and byte arrays point into the buffer instead of being copied into the zone:
// the buffer outlives every object decoded from it, and a payload is then copied once,
// into its final type.
bool reference_all(msgpack::type::object_type, std::size_t, void*) { return true; }

// Every element takes at least one byte, so no honest header declares more elements
// than the bytes that remain; this stops a 5-byte message from asking for gigabytes.
msgpack::unpack_limit limits_for(std::size_t remaining) {
  return msgpack::unpack_limit(remaining, remaining / 2, remaining, remaining, remaining,
                               kMaxDepth);
}

// What follows each tag from 0xc4 to 0xdf: the bytes of its length or count, the bytes of
// payload besides what that length says, and what the length counts.
enum class Counts : std::uint8_t { nothing, bytes, elements, pairs };
struct Tail {
  std::uint8_t width, bytes;
  Counts counts;
};
constexpr Counts N = Counts::nothing, B = Counts::bytes, E = Counts::elements, P = Counts::pairs;
// In tag order: bin 8, 16, 32; ext 8, 16, 32 (a type byte, then the data); float 32, 64;
// uint 8 .. 64; int 8 .. 64; fixext 1 .. 16 (a type byte, then 1 .. 16 bytes); str 8,
// 16, 32; array 16, 32; map 16, 32.
constexpr Tail kTails[] = {{1, 0, B}, {2, 0, B}, {4, 0, B},  {1, 1, B}, {2, 1, B}, {4, 1, B},
                           {0, 4, N}, {0, 8, N}, {0, 1, N},  {0, 2, N}, {0, 4, N}, {0, 8, N},
                           {0, 1, N}, {0, 2, N}, {0, 4, N},  {0, 8, N}, {0, 2, N}, {0, 3, N},
                           {0, 5, N}, {0, 9, N}, {0, 17, N}, {1, 0, B}, {2, 0, B}, {4, 0, B},
                           {2, 0, E}, {4, 0, E}, {2, 0, P},  {4, 0, P}};
static_assert(std::size(kTails) == 0xdf - 0xc4 + 1);

// unpack_limit caps each array's (and map's) count by the buffer's size, but not their
// sum, and msgpack's parser allocates each one's elements as soon as it reads the count:
// 63 nested arrays, each declaring as many elements as the buffer has bytes, made a
// 64 KiB header allocate 264 MB before the parser found it truncated (2 GB from 1 MiB,
// tests/fuzz/regressions/fuzz_headers). Every object takes at least one byte, so the
// objects that the containers opened so far still owe cannot outnumber the bytes left:
// this checks that in one pass over the first object at p, before the parser runs, which
// keeps what it allocates within a small multiple of the input. False if the count is
// exceeded; true otherwise, truncated or invalid input included (the parser says why).
bool owed_fits(const char* p, std::size_t size) noexcept {
  std::size_t owed = 1;  // objects still to come
  std::size_t at = 0;
  while (owed > 0 && at < size) {
    const auto c = static_cast<unsigned char>(p[at++]);
    --owed;
    Tail t{0, 0, N};  // fixint, nil, bool (and 0xc1, which the parser rejects)
    std::size_t n = 0;
    if (c >= 0x80 && c <= 0x8f) {
      t.counts = P, n = c & 0x0fu;
    } else if (c >= 0x90 && c <= 0x9f) {
      t.counts = E, n = c & 0x0fu;
    } else if (c >= 0xa0 && c <= 0xbf) {
      t.counts = B, n = c & 0x1fu;
    } else if (c >= 0xc4 && c <= 0xdf) {
      t = kTails[c - 0xc4];
    }
    if (size - at < t.width) return true;
    for (unsigned i = 0; i < t.width; ++i) n = n << 8 | static_cast<unsigned char>(p[at + i]);
    at += t.width;
    const std::size_t bytes = t.bytes + (t.counts == B ? n : 0);
    if (size - at < bytes) return true;
    at += bytes;
    if (t.counts == E) owed += n;
    if (t.counts == P) owed += 2 * n;
    if (owed > size - at) return false;
  }
  return true;
}

// msgpack's parser, with the limits above, on the first object at data + offset.
msgpack::object unpack_bounded(msgpack::zone& zone, const char* data, std::size_t size,
                               std::size_t& offset) {
  if (!owed_fits(data + offset, size - offset))
    throw SerializationError("malformed msgpack: more elements declared than bytes left");
  try {
    bool referenced = false;
    return msgpack::unpack(zone, data, size, offset, referenced, reference_all, nullptr,
                           limits_for(size - offset));
  } catch (const std::exception& e) {
    throw SerializationError(std::string("malformed msgpack: ") + e.what());
  }
}

void set_int(msgpack::object& o, std::int64_t v) {
  if (v >= 0) {
    o.type = msgpack::type::POSITIVE_INTEGER;
    o.via.u64 = static_cast<std::uint64_t>(v);
  } else {
    o.type = msgpack::type::NEGATIVE_INTEGER;
    o.via.i64 = v;
  }
}

// The integers whose width follows the tag (0xcc-0xd3), for next_scalar: `need(n)` checks
// and consumes the tag and n bytes. False, consuming nothing, for any other tag.
template <class Need>
bool next_sized_int(unsigned char c, const char* p, Need& need, msgpack::object& o) {
  switch (c) {
    case 0xcc:
      need(1);
      set_int(o, static_cast<std::uint8_t>(*p));
      break;
    case 0xcd:
      need(2);
      set_int(o, load_be<std::uint16_t>(p));
      break;
    case 0xce:
      need(4);
      set_int(o, load_be<std::uint32_t>(p));
      break;
    case 0xcf:
      need(8);
      o.type = msgpack::type::POSITIVE_INTEGER;
      o.via.u64 = load_be<std::uint64_t>(p);
      break;
    case 0xd0:
      need(1);
      set_int(o, static_cast<std::int8_t>(*p));
      break;
    case 0xd1:
      need(2);
      set_int(o, load_be<std::int16_t>(p));
      break;
    case 0xd2:
      need(4);
      set_int(o, load_be<std::int32_t>(p));
      break;
    case 0xd3:
      need(8);
      set_int(o, load_be<std::int64_t>(p));
      break;
    default:
      return false;
  }
  return true;
}
}  // namespace

// Decodes one scalar (integer, float, bool, nil) without msgpack's general parser or
// any allocation: the common case for small tasks. False (nothing consumed) otherwise.
bool Reader::next_scalar(msgpack::object& o) {
  const auto c = static_cast<unsigned char>(data_[offset_]);
  const char* p = data_ + offset_ + 1;
  const std::size_t left = size_ - offset_ - 1;
  auto need = [&](std::size_t n) {
    if (left < n) throw SerializationError("malformed msgpack: truncated value");
    offset_ += 1 + n;
  };
  if (c <= 0x7f) {
    set_int(o, c);
    need(0);
  } else if (c >= 0xe0) {
    set_int(o, static_cast<std::int8_t>(c));
    need(0);
  } else {
    switch (c) {
      case 0xc0:
        o.type = msgpack::type::NIL;
        need(0);
        break;
      case 0xc2:
      case 0xc3:
        o.type = msgpack::type::BOOLEAN;
        o.via.boolean = c == 0xc3;
        need(0);
        break;
      case 0xca:
        need(4);
        o.type = msgpack::type::FLOAT32;
        o.via.f64 = std::bit_cast<float>(load_be<std::uint32_t>(p));
        break;
      case 0xcb:
        need(8);
        o.type = msgpack::type::FLOAT64;
        o.via.f64 = std::bit_cast<double>(load_be<std::uint64_t>(p));
        break;
      default:
        return next_sized_int(c, p, need, o);
    }
  }
  return true;
}

// A fixarray of up to 8 scalars (an argument tuple of numbers) into small_.
bool Reader::next_small(msgpack::object& o) {
  const auto c = static_cast<unsigned char>(data_[offset_]);
  if (c < 0x90 || c > 0x98) return false;
  const std::size_t start = offset_;
  const std::uint32_t n = c & 0x0f;
  ++offset_;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (offset_ >= size_) throw SerializationError("malformed msgpack: truncated array");
    if (!next_scalar(small_[i])) {
      offset_ = start;
      return false;
    }
  }
  o.type = msgpack::type::ARRAY;
  o.via.array.size = n;
  o.via.array.ptr = small_;
  return true;
}

bool Reader::next_array_header(std::uint32_t& n) noexcept {
  if (offset_ >= size_) return false;
  const auto c = static_cast<unsigned char>(data_[offset_]);
  const std::size_t left = size_ - offset_ - 1;
  if (c >= 0x90 && c <= 0x9f) {
    n = c & 0x0f;
    offset_ += 1;
  } else if (c == 0xdc && left >= 2) {
    n = load_be<std::uint16_t>(data_ + offset_ + 1);
    offset_ += 3;
  } else if (c == 0xdd && left >= 4) {
    n = load_be<std::uint32_t>(data_ + offset_ + 1);
    offset_ += 5;
  } else {
    return false;
  }
  return true;
}

bool Reader::next_str(std::string_view& s) noexcept {
  if (offset_ >= size_) return false;
  const auto c = static_cast<unsigned char>(data_[offset_]);
  const std::size_t left = size_ - offset_ - 1;
  std::size_t len = 0, head = 1;
  if (c >= 0xa0 && c <= 0xbf) {
    len = c & 0x1f;
  } else if (c == 0xd9 && left >= 1) {
    len = load_be<std::uint8_t>(data_ + offset_ + 1);
    head = 2;
  } else if (c == 0xda && left >= 2) {
    len = load_be<std::uint16_t>(data_ + offset_ + 1);
    head = 3;
  } else if (c == 0xdb && left >= 4) {
    len = load_be<std::uint32_t>(data_ + offset_ + 1);
    head = 5;
  } else {
    return false;
  }
  if (size_ - offset_ - head < len) return false;
  s = std::string_view(data_ + offset_ + head, len);
  offset_ += head + len;
  return true;
}

const msgpack::object& Reader::next() {
  if (offset_ >= size_) throw SerializationError("message ends before its last value");
  if (next_scalar(obj_) || next_small(obj_)) return obj_;
  if (zone_)
    zone_->clear();
  else
    zone_.emplace();
  obj_ = unpack_bounded(*zone_, data_, size_, offset_);
  return obj_;
}

void Reader::expect_end() const {
  if (offset_ != size_)
    throw SerializationError(std::to_string(size_ - offset_) + " unexpected trailing bytes");
}

std::vector<std::size_t> object_sizes(const void* data, std::size_t size, std::size_t count) {
  std::vector<std::size_t> out;
  out.reserve(std::min(count, size));  // each object takes a byte: never trust `count` alone
  Reader reader(data, size);
  std::size_t start = 0;
  for (std::size_t i = 0; i < count; ++i) {
    (void)reader.next();
    out.push_back(reader.offset() - start);
    start = reader.offset();
  }
  return out;
}

namespace {
// Exactly one object spanning the buffer, into `zone`.
msgpack::object unpack_whole(msgpack::zone& zone, const void* data, std::size_t size) {
  std::size_t off = 0;
  const msgpack::object obj = unpack_bounded(zone, static_cast<const char*>(data), size, off);
  if (off != size)
    throw SerializationError(std::to_string(size - off) + " unexpected trailing bytes");
  return obj;
}
}  // namespace

const msgpack::object& unpack_exact_reused(const void* data, std::size_t size) {
  thread_local msgpack::zone zone;
  thread_local msgpack::object obj;
  zone.clear();  // keeps its first chunk
  obj = unpack_whole(zone, data, size);
  return obj;
}

msgpack::object_handle unpack_exact(const void* data, std::size_t size) {
  auto zone = std::make_unique<msgpack::zone>();
  const msgpack::object obj = unpack_whole(*zone, data, size);
  return msgpack::object_handle(obj, std::move(zone));
}

namespace {

const char* kind_of(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL:
      return "nil";
    case msgpack::type::BOOLEAN:
      return "boolean";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER:
      return "integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return "float";
    case msgpack::type::STR:
      return "string";
    case msgpack::type::BIN:
      return "binary";
    case msgpack::type::ARRAY:
      return "array";
    case msgpack::type::MAP:
      return "map";
    case msgpack::type::EXT:
      return "extension";
  }
  return "unknown object";
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}

}  // namespace

std::string describe_object(const msgpack::object& o) {
  std::string out = std::string("a msgpack ") + kind_of(o);
  if (o.type == msgpack::type::MAP) out += " of " + std::to_string(o.via.map.size);
  if (o.type != msgpack::type::ARRAY) return out;
  // An argument tuple or a struct: the kinds of its first elements say what went wrong.
  const std::uint32_t n = o.via.array.size;
  out += " of " + std::to_string(n);
  if (n == 0) return out;
  out += " (";
  constexpr std::uint32_t kShown = 6;
  for (std::uint32_t i = 0; i < std::min(n, kShown); ++i)
    out += std::string(i ? ", " : "") + kind_of(o.via.array.ptr[i]);
  return out + (n > kShown ? ", ...)" : ")");
}

std::string readable_type_name(std::string_view pretty) {
  const auto at = pretty.find("T = ");
  if (at == std::string_view::npos) return std::string(pretty);
  std::string name(pretty.substr(at + 4));
  // The text ends at "]" (or, in GCC's, at "; " before other names it explains).
  int depth = 0;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '<' || c == '(' || c == '[') ++depth;
    if (c == '>' || c == ')') --depth;
    if ((c == ']' && depth-- == 0) || (c == ';' && depth == 0)) {
      name.resize(i);
      break;
    }
  }
  replace_all(name, "std::__cxx11::", "std::");
  replace_all(name, "std::basic_string<char>", "std::string");
  replace_all(name, "std::basic_string_view<char>", "std::string_view");
  replace_all(name, " >", ">");
  return name;
}

}  // namespace mqpool::detail
