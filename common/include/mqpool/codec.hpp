// The msgpack codec: what can be encoded, and bounded decoding of object streams.
// A chunk's arguments and outcomes travel as a concatenation of msgpack objects (the
// count is in the message header), so that batches are built by appending bytes.
#pragma once

#include <msgpack.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
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
concept has_msgpack_define = requires(const T& v, msgpack::packer<msgpack::sbuffer>& p) {
  v.msgpack_pack(p);
};

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
  std::size_t offset() const noexcept { return offset_; }

 private:
  bool next_scalar(msgpack::object& o);
  bool next_small(msgpack::object& o);

  const char* data_;
  std::size_t size_;
  std::size_t offset_ = 0;
  msgpack::zone zone_;
  msgpack::object obj_;
  msgpack::object small_[8];  // elements of a short array of scalars (the fast path)
};

// The byte length of each of the first `count` objects of a stream, to split a chunk
// into single tasks without re-encoding. Throws SerializationError.
std::vector<std::size_t> object_sizes(const void* data, std::size_t size, std::size_t count);

// Decodes exactly one object spanning the whole buffer (headers). Throws SerializationError.
msgpack::object_handle unpack_exact(const void* data, std::size_t size);

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
    if (n < Buffer::kHugeFrom) return T(p, p + n);
    // A large payload: reserve first, so that its pages can be huge ones, then copy
    // once (msgpack's adaptor would zero-fill the buffer first).
    T out;
    out.reserve(huge_capacity(n));
    prefer_huge_pages(out.data(), n);
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

// Converts a decoded object to T; throws SerializationError naming what was expected.
template <class T>
T convert(const msgpack::object& o) {
  try {
    return convert_value<T>(o);
  } catch (const std::exception& e) {
    throw SerializationError(std::string("cannot decode value: ") + e.what());
  }
}

}  // namespace detail
}  // namespace mqpool
