#include "mqpool/codec.hpp"

#include <algorithm>

namespace mqpool::detail {

namespace {
constexpr std::size_t kMaxDepth = 64;

// Every element takes at least one byte, so no honest header declares more elements
// than the bytes that remain; this stops a 5-byte message from asking for gigabytes.
msgpack::unpack_limit limits_for(std::size_t remaining) {
  return msgpack::unpack_limit(remaining, remaining / 2, remaining, remaining, remaining,
                               kMaxDepth);
}
}  // namespace

const msgpack::object& Reader::next() {
  if (offset_ >= size_) throw SerializationError("message ends before its last value");
  zone_.clear();
  try {
    bool referenced = false;
    obj_ = msgpack::unpack(zone_, data_, size_, offset_, referenced, nullptr, nullptr,
                           limits_for(size_ - offset_));
  } catch (const std::exception& e) {
    throw SerializationError(std::string("malformed msgpack: ") + e.what());
  }
  return obj_;
}

void Reader::expect_end() const {
  if (offset_ != size_)
    throw SerializationError(std::to_string(size_ - offset_) + " unexpected trailing bytes");
}

std::vector<std::size_t> object_sizes(const void* data, std::size_t size, std::size_t count) {
  std::vector<std::size_t> out;
  out.reserve(count);
  Reader reader(data, size);
  std::size_t start = 0;
  for (std::size_t i = 0; i < count; ++i) {
    (void)reader.next();
    out.push_back(reader.offset() - start);
    start = reader.offset();
  }
  return out;
}

msgpack::object_handle unpack_exact(const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  std::size_t off = 0;
  msgpack::object_handle h;
  try {
    h = msgpack::unpack(p, size, off, nullptr, nullptr, limits_for(size));
  } catch (const std::exception& e) {
    throw SerializationError(std::string("malformed msgpack: ") + e.what());
  }
  if (off != size)
    throw SerializationError(std::to_string(size - off) + " unexpected trailing bytes");
  return h;
}

}  // namespace mqpool::detail
