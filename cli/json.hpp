// A minimal JSON writer for the command's machine-readable output: one compact
// document, keys in the order written, strings escaped and always valid UTF-8.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mqpool::cli {

// Builds one JSON text. The caller pairs begin_*/end_* and gives a key() before each
// member of an object; the writer adds the commas. Not thread-safe.
class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  // The name of the next member of the current object.
  JsonWriter& key(std::string_view name);
  // A string; bytes that are not UTF-8 become U+FFFD.
  JsonWriter& value(std::string_view s);
  JsonWriter& value(std::uint64_t n);
  JsonWriter& value(bool b);
  // A number with at most `decimals` digits after the point (trailing zeros dropped);
  // null when it is not finite, which JSON cannot write.
  JsonWriter& value(double x, int decimals = 3);
  // The text so far.
  const std::string& str() const { return out_; }

 private:
  void separate();

  std::string out_;
  bool first_ = true;       // no member or element yet in the current container
  bool after_key_ = false;  // a key was just written: its value needs no comma
};

// `s` as a JSON string literal, quotes included (the escaping of JsonWriter::value).
std::string json_quote(std::string_view s);

}  // namespace mqpool::cli
