// The msgpack codec: what can be encoded, and bounded decoding of object streams.
// A chunk's arguments and outcomes travel as a concatenation of msgpack objects (the
// count is in the message header), so that batches are built by appending bytes.
#pragma once

// msgpack's core and the adaptors of the types docs/API.md lists as encodable, not all
// of <msgpack.hpp>: every file that includes mqpool.hpp compiles this, and msgpack's
// other adaptors (deque, list, chrono, byte, span, ...) cost a sixth of its parse time
// (docs/PERFORMANCE.md, "Build time"). A program that encodes one of those (through
// mqpool::encodable<T>) includes it itself.
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <msgpack/adaptor/bool.hpp>
#include <msgpack/adaptor/cpp11/array.hpp>
#include <msgpack/adaptor/cpp11/array_char.hpp>
#include <msgpack/adaptor/cpp11/array_unsigned_char.hpp>
#include <msgpack/adaptor/cpp11/tuple.hpp>
#include <msgpack/adaptor/cpp11/unordered_map.hpp>
#include <msgpack/adaptor/cpp17/optional.hpp>
#include <msgpack/adaptor/define.hpp>
#include <msgpack/adaptor/float.hpp>
#include <msgpack/adaptor/int.hpp>
#include <msgpack/adaptor/map.hpp>
#include <msgpack/adaptor/nil.hpp>
#include <msgpack/adaptor/pair.hpp>
#include <msgpack/adaptor/set.hpp>
#include <msgpack/adaptor/string.hpp>
#include <msgpack/adaptor/vector.hpp>
#include <msgpack/adaptor/vector_bool.hpp>
#include <msgpack/adaptor/vector_char.hpp>
#include <msgpack/adaptor/vector_unsigned_char.hpp>
#include <msgpack/object.hpp>
#include <msgpack/pack.hpp>
#include <msgpack/sbuffer.hpp>
#include <msgpack/unpack.hpp>
#include <msgpack/zone.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mqpool/buffer.hpp"
#include "mqpool/errors.hpp"

namespace mqpool {

// Specialize to std::true_type for a type that has a hand-written msgpack adaptor.
template <class T>
struct encodable : std::false_type {};

namespace detail {

template <class T>
struct is_encodable_impl;

template <class T>
concept has_msgpack_define =
    requires(const T& v, msgpack::packer<msgpack::sbuffer>& p) { v.msgpack_pack(p); };

template <class T>
constexpr bool is_encodable_v = is_encodable_impl<std::remove_cvref_t<T>>::value;

template <class T>
struct is_encodable_impl
    : std::bool_constant<std::is_arithmetic_v<T> || std::is_enum_v<T> ||
                         std::is_same_v<T, std::string> || std::is_same_v<T, msgpack::object> ||
                         has_msgpack_define<T> || encodable<T>::value> {};
template <class T, class A>
struct is_encodable_impl<std::vector<T, A>> : std::bool_constant<is_encodable_v<T>> {};
template <class T, std::size_t N>
struct is_encodable_impl<std::array<T, N>> : std::bool_constant<is_encodable_v<T>> {};
template <class T>
struct is_encodable_impl<std::optional<T>> : std::bool_constant<is_encodable_v<T>> {};
template <class T, class C, class A>
struct is_encodable_impl<std::set<T, C, A>> : std::bool_constant<is_encodable_v<T>> {};
template <class K, class V, class C, class A>
struct is_encodable_impl<std::map<K, V, C, A>>
    : std::bool_constant<is_encodable_v<K> && is_encodable_v<V>> {};
template <class K, class V, class H, class E, class A>
struct is_encodable_impl<std::unordered_map<K, V, H, E, A>>
    : std::bool_constant<is_encodable_v<K> && is_encodable_v<V>> {};
template <class A, class B>
struct is_encodable_impl<std::pair<A, B>>
    : std::bool_constant<is_encodable_v<A> && is_encodable_v<B>> {};
template <class... T>
struct is_encodable_impl<std::tuple<T...>> : std::bool_constant<(is_encodable_v<T> && ...)> {};

// Stops compilation with a message that names the fix, instead of a page of msgpack errors.
template <class T>
constexpr void check_encodable() {
  static_assert(is_encodable_v<T>,
                "mqpool: this argument or result type cannot be encoded with msgpack. Use "
                "arithmetic types, std::string, std::vector, std::map, std::tuple, "
                "std::optional, or add MSGPACK_DEFINE(fields...) to your struct (or "
                "specialize mqpool::encodable<T> for a hand-written msgpack adaptor).");
}

using Packer = msgpack::packer<Buffer>;

// Integers (not bool): the arguments and results of most small tasks, encoded and
// decoded here without msgpack's per-value machinery.
template <class T>
concept plain_integer = std::is_integral_v<T> && !std::is_same_v<T, bool>;

// A tuple of exactly one plain integer: the argument tuple of f(int).
template <class Tuple>
constexpr bool is_integer_tuple1() {
  if constexpr (std::tuple_size_v<Tuple> == 1)
    return plain_integer<std::remove_cvref_t<std::tuple_element_t<0, Tuple>>>;
  else
    return false;
}

// msgpack is big-endian; these are the hosts we build for.
static_assert(std::endian::native == std::endian::little);

// The big-endian form of u (and back): one instruction.
template <class U>
constexpr U swap_bytes(U u) noexcept {
  if constexpr (sizeof(U) == 1)
    return u;
  else if constexpr (sizeof(U) == 2)
    return __builtin_bswap16(u);
  else if constexpr (sizeof(U) == 4)
    return __builtin_bswap32(u);
  else
    return __builtin_bswap64(u);
}

// The big-endian T stored at p.
template <class T>
T load_be(const char* p) noexcept {
  std::make_unsigned_t<T> u;
  std::memcpy(&u, p, sizeof u);
  return static_cast<T>(swap_bytes(u));
}

// Writes v at p in msgpack's shortest integer form, as msgpack's packer writes it, and
// returns its length; p must have room for 9 bytes. The widths are 1, 2, 4 or 8 bytes
// after the tag: the value is stored as the top bytes of one big-endian 8-byte word, so
// there is no branch per width. Touches nothing but p: callers keep their state in
// registers (a store through char* could otherwise alias any of it). Always inlined:
// GCC left it a call in the loops of a map's arguments and values (docs/PERFORMANCE.md).
template <plain_integer T>
[[gnu::always_inline]] inline std::size_t encode_integer(char* p, T v) noexcept {
  unsigned lg;  // log2 of the width
  std::uint64_t bits;
  if (v >= 0) {
    const auto u = static_cast<std::uint64_t>(v);
    if (u <= 0x7f) {
      p[0] = static_cast<char>(u);
      return 1;
    }
    lg = u <= 0xff ? 0 : u <= 0xffff ? 1 : u <= 0xffffffff ? 2 : 3;
    p[0] = static_cast<char>(0xcc + lg);
    bits = u;
  } else {
    const auto s = static_cast<std::int64_t>(v);
    if (s >= -32) {
      p[0] = static_cast<char>(s);
      return 1;
    }
    lg = s >= INT8_MIN ? 0 : s >= INT16_MIN ? 1 : s >= INT32_MIN ? 2 : 3;
    p[0] = static_cast<char>(0xd0 + lg);
    bits = static_cast<std::uint64_t>(s);  // two's complement: its low bytes are the value
  }
  const unsigned width = 1u << lg;
  const std::uint64_t be = swap_bytes(bits << (64 - 8 * width));
  std::memcpy(p + 1, &be, sizeof be);
  return 1 + width;
}

template <plain_integer T>
void pack_integer(Buffer& b, T v) {
  b.commit(encode_integer(b.tail(9), v));
}

// Reads the msgpack integer at p if it fits T: its length, else 0 (v untouched). At
// least 9 bytes must be readable at p, so that the word after the tag loads at once,
// whatever the width: no bounds check at all (Reader::next_integers' loop).
template <plain_integer T>
[[gnu::always_inline]] inline std::size_t decode_whole_integer(const char* p, T& v) noexcept {
  const auto c = static_cast<unsigned char>(p[0]);
  if (c <= 0x7f || c >= 0xe0) {  // positive and negative fixint
    const auto x = c <= 0x7f ? std::int64_t{c} : std::int64_t{static_cast<std::int8_t>(c)};
    if (!std::in_range<T>(x)) return 0;
    v = static_cast<T>(x);
    return 1;
  }
  // 0xcc..0xcf: unsigned of 1, 2, 4, 8 bytes; 0xd0..0xd3: signed of the same widths.
  const unsigned k = c - 0xccu;
  if (k > 7) return 0;
  const unsigned width = 1u << (k & 3);
  const std::uint64_t top = load_be<std::uint64_t>(p + 1);  // the value's bytes on top
  const unsigned shift = 64 - 8 * width;
  if (k < 4) {
    const std::uint64_t u = top >> shift;
    if (!std::in_range<T>(u)) return 0;
    v = static_cast<T>(u);
  } else {
    const std::int64_t s = static_cast<std::int64_t>(top) >> shift;
    if (!std::in_range<T>(s)) return 0;
    v = static_cast<T>(s);
  }
  return 1 + width;
}

// Reads the msgpack integer at p (of `left` bytes) if it fits T: its length, else 0.
template <plain_integer T>
std::size_t decode_integer(const char* p, std::size_t left, T& v) noexcept {
  if (left >= 9) return decode_whole_integer(p, v);
  if (left == 0) return 0;  // and p may be null: no memcpy from it
  // Near the end of the buffer: the same decoder over a zero-padded copy, and the
  // integer must lie within the bytes there are.
  char padded[9] = {};
  std::memcpy(padded, p, left);
  T x{};
  const std::size_t n = decode_whole_integer(padded, x);
  if (n == 0 || n > left) return 0;
  v = x;
  return n;
}

// Decodes a stream of msgpack objects from one buffer, one object at a time, with
// limits derived from the buffer's size (a header cannot declare more elements than
// there are bytes) and a nesting depth cap. The zone is reused between objects.
// Throws SerializationError on malformed or truncated input.
class Reader {
 public:
  Reader(const void* data, std::size_t size) noexcept
      : data_(static_cast<const char*>(data)), size_(size) {}

  // The next object; valid until the next call. Throws SerializationError.
  const msgpack::object& next();
  // Throws SerializationError unless every byte was consumed.
  void expect_end() const;
  bool at_end() const noexcept { return offset_ == size_; }
  // The next object when it is an integer that fits T (or a one-element array of one,
  // an argument tuple); false, with nothing consumed, otherwise.
  template <plain_integer T>
  bool next_integer(T& v) noexcept {
    const std::size_t n = integer_at(offset_, v);
    offset_ += n;
    return n != 0;
  }
  // Up to n consecutive integers into out[0..n): how many were read (it stops before
  // anything that is not an integer fitting T).
  template <plain_integer T>
  std::size_t next_integers(T* out, std::size_t n) noexcept {
    return read_integers<false>(out, n);
  }
  // The same for one-element arrays of an integer (argument tuples of f(int)).
  template <plain_integer T>
  std::size_t next_integer_tuples(T* out, std::size_t n) noexcept {
    return read_integers<true>(out, n);
  }
  template <plain_integer T>
  bool next_integer_tuple(T& v) noexcept {
    if (offset_ >= size_ || static_cast<unsigned char>(data_[offset_]) != 0x91) return false;
    const std::size_t n = integer_at(offset_ + 1, v);
    offset_ += n == 0 ? 0 : 1 + n;
    return n != 0;
  }
  // The next object's array header (its element count), string (a view into the
  // buffer) or boolean; false, with nothing consumed, if it is something else or
  // truncated.
  bool next_array_header(std::uint32_t& n) noexcept;
  bool next_bool(bool& b) noexcept {
    if (offset_ >= size_) return false;
    const auto c = static_cast<unsigned char>(data_[offset_]);
    if (c != 0xc2 && c != 0xc3) return false;
    b = c == 0xc3;
    ++offset_;
    return true;
  }
  bool next_str(std::string_view& s) noexcept;
  std::size_t offset() const noexcept { return offset_; }

 private:
  // next_integers, or with kTuples next_integer_tuples: each integer after a 0x91.
  template <bool kTuples, plain_integer T>
  std::size_t read_integers(T* out, std::size_t n) noexcept {
    constexpr std::size_t kHead = kTuples ? 1 : 0;
    const char* const data = data_;  // locals: the stores to out cannot alias them
    const std::size_t size = size_;
    std::size_t at = offset_;
    std::size_t i = 0;
    // While 9 bytes follow the array header every integer is whole: no bounds checks
    // but the loop's own.
    for (; i < n && size - at >= kHead + 9; ++i) {
      if (kTuples && static_cast<unsigned char>(data[at]) != 0x91) break;
      const std::size_t len = decode_whole_integer(data + at + kHead, out[i]);
      if (len == 0) break;
      at += kHead + len;
    }
    offset_ = at;
    // The last few bytes, one by one with every check.
    for (; i < n; ++i)
      if (!(kTuples ? next_integer_tuple(out[i]) : next_integer(out[i]))) break;
    return i;
  }
  template <plain_integer T>
  std::size_t integer_at(std::size_t at, T& v) const noexcept {
    return at < size_ ? decode_integer(data_ + at, size_ - at, v) : 0;
  }
  bool next_scalar(msgpack::object& o);
  bool next_small(msgpack::object& o);

  const char* data_;
  std::size_t size_;
  std::size_t offset_ = 0;
  // Made on first use: msgpack's zone allocates an 8 KiB chunk up front, and most
  // readers (integers, strings, short tuples) never need one.
  std::optional<msgpack::zone> zone_;
  msgpack::object obj_;
  msgpack::object small_[8];  // elements of a short array of scalars (the fast path)
};

// The byte length of each of the first `count` objects of a stream, to split a chunk
// into single tasks without re-encoding. Throws SerializationError.
std::vector<std::size_t> object_sizes(const void* data, std::size_t size, std::size_t count);

// Decodes exactly one object spanning the whole buffer (headers). Throws SerializationError.
msgpack::object_handle unpack_exact(const void* data, std::size_t size);
// As unpack_exact, into a zone that belongs to the calling thread and is reused: no
// allocation per header. The object is valid until this thread's next call.
const msgpack::object& unpack_exact_reused(const void* data, std::size_t size);

template <class T>
struct is_tuple : std::false_type {};
template <class... T>
struct is_tuple<std::tuple<T...>> : std::true_type {};

template <class T>
constexpr bool is_byte_container_v =
    std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<char>> ||
    std::is_same_v<T, std::vector<unsigned char>>;

template <class T>
T convert_value(const msgpack::object& o) {
  if constexpr (is_byte_container_v<T>) {
    const char* p;
    std::size_t n;
    if (o.type == msgpack::type::BIN) {
      p = o.via.bin.ptr;
      n = o.via.bin.size;
    } else if (o.type == msgpack::type::STR) {
      p = o.via.str.ptr;
      n = o.via.str.size;
    } else {
      throw msgpack::type_error();
    }
    // Copied once (msgpack's adaptor would zero-fill the buffer first); a large payload
    // into memory reserved so that its pages can be huge ones.
    if (n < Buffer::kHugeFrom) return T(p, p + n);
    T out;
    reserve_to_fill(out, n);
    out.assign(p, p + n);
    return out;
  } else if constexpr (is_tuple<T>::value) {
    // Argument tuples: element by element, so that byte payloads take the path above.
    if (o.type != msgpack::type::ARRAY || o.via.array.size != std::tuple_size_v<T>)
      throw msgpack::type_error();
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return T(convert_value<std::tuple_element_t<I, T>>(o.via.array.ptr[I])...);
    }(std::make_index_sequence<std::tuple_size_v<T>>{});
  } else {
    return o.as<T>();
  }
}

// What `o` holds, for error messages: "a msgpack integer", "a msgpack array of 2
// (integer, string)".
std::string describe_object(const msgpack::object& o);

// The C++ name of a type from a compiler's __PRETTY_FUNCTION__ text "...[with T = X]"
// (GCC) or "...[T = X]" (Clang), as people write it: "std::string", not
// "std::__cxx11::basic_string<char>".
std::string readable_type_name(std::string_view pretty_function);

template <class T>
const char* pretty_function_of() {
  return __PRETTY_FUNCTION__;
}

// T as C++ spells it ("std::string", "std::vector<double>"), for error messages. Builds
// a string: call it on error paths only.
template <class T>
std::string type_name() {
  return readable_type_name(pretty_function_of<T>());
}

// Converts a decoded object to T; throws SerializationError naming what arrived and T.
template <class T>
T convert(const msgpack::object& o) {
  try {
    return convert_value<T>(o);
  } catch (const std::exception&) {
    throw SerializationError("cannot decode " + describe_object(o) + " as " + type_name<T>());
  }
}

}  // namespace detail
}  // namespace mqpool

// msgpack-c 4.1 packs a double or float that holds an integer as that integer, once it
// has checked that the value is at most UINT64_MAX; but UINT64_MAX, made a double or a
// float for the comparison, rounds up to 2^64, which then passes it, and converting 2^64
// to uint64_t is undefined behaviour (UBSan found it: a task of tests/fuzz/fuzz_args that
// returned 2^64). Every value mqpool encodes goes through our Buffer's packer, so for that
// one the same encoding is written here with the exact bounds, below 2^64 and from -2^63.
namespace msgpack::v1 {
template <>
inline packer<mqpool::detail::Buffer>& packer<mqpool::detail::Buffer>::pack_double(double d) {
  if (d >= 0 && d < 0x1p64 && d == static_cast<double>(static_cast<std::uint64_t>(d)))
    return pack_uint64(static_cast<std::uint64_t>(d));
  if (d < 0 && d >= -0x1p63 && d == static_cast<double>(static_cast<std::int64_t>(d)))
    return pack_int64(static_cast<std::int64_t>(d));
  char buf[9] = {static_cast<char>(0xcb)};
  const std::uint64_t be = mqpool::detail::swap_bytes(std::bit_cast<std::uint64_t>(d));
  std::memcpy(buf + 1, &be, sizeof be);
  append_buffer(buf, sizeof buf);
  return *this;
}

template <>
inline packer<mqpool::detail::Buffer>& packer<mqpool::detail::Buffer>::pack_float(float d) {
  if (d >= 0 && d < 0x1p64f && d == static_cast<float>(static_cast<std::uint64_t>(d)))
    return pack_uint64(static_cast<std::uint64_t>(d));
  if (d < 0 && d >= -0x1p63f && d == static_cast<float>(static_cast<std::int64_t>(d)))
    return pack_int64(static_cast<std::int64_t>(d));
  char buf[5] = {static_cast<char>(0xca)};
  const std::uint32_t be = mqpool::detail::swap_bytes(std::bit_cast<std::uint32_t>(d));
  std::memcpy(buf + 1, &be, sizeof be);
  append_buffer(buf, sizeof buf);
  return *this;
}
}  // namespace msgpack::v1
