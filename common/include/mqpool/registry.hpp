// The task registry: functions that workers can run, by name.
//
//   int square(int x) { return x * x; }
//   MQPOOL_TASK(square);                    // registered as "square"
//   MQPOOL_TASK_AS(norm, "linalg.norm");    // registered under an explicit name
//   const mqpool::Remote<int(int)> square_remote{"square"};   // call by name only
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "mqpool/codec.hpp"

namespace mqpool {

// A typed handle to a function that only the workers link; pass it wherever a
// registered function is accepted. Thread-safe (immutable).
template <class Sig>
class Remote;

template <class R, class... A>
class Remote<R(A...)> {
 public:
  // Holds `name` only; nothing is checked here. A name no connected worker knows fails
  // the task with UnknownTaskError, a wrong signature with SerializationError.
  explicit Remote(std::string name) : name_(std::move(name)) {}
  // The task's name. Never throws.
  const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
};

namespace detail {

// The outcomes of one chunk: one msgpack value per task (nil where it failed) and the
// failures by position within the chunk.
struct ChunkOutput {
  Buffer values{256};
  std::vector<std::pair<std::uint32_t, WireError>> errors;
};

// Runs `count` tasks whose argument tuples `args` yields, appending to `out`.
using RunChunk = void (*)(Reader& args, std::uint32_t count, ChunkOutput& out,
                          const std::string& name);

struct TaskEntry {
  std::string name;
  const void* address;  // the function, so that a client can pass `square` itself
  RunChunk run;
};

// Process-wide table of registered tasks. Registration happens during static
// initialisation; lookups afterwards are read-only and thread-safe.
class Registry {
 public:
  static Registry& instance();
  // Records a task; a second entry under one name is remembered and reported by validate().
  bool add(std::string name, const void* address, RunChunk run);
  // Throws std::logic_error naming every name registered twice.
  void validate() const;
  // The task registered under `name`, or nullptr.
  const TaskEntry* find(std::string_view name) const;
  // The name of the task whose function is `address`, or nullptr.
  const std::string* name_of(const void* address) const;
  std::vector<std::string> names() const;

 private:
  std::vector<TaskEntry> entries_;
  std::vector<std::string> duplicates_;
};

// Describes the exception being handled (inside a catch block) for the wire.
WireError describe_current_exception(const std::string& task_name);

template <class F>
struct signature;
template <class R, class... A>
struct signature<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};
template <class R, class... A>
struct signature<R (*)(A...) noexcept> : signature<R (*)(A...)> {};
template <class R, class... A>
struct signature<Remote<R(A...)>> : signature<R (*)(A...)> {};

template <class T>
constexpr void check_signature() {
  using S = signature<T>;
  if constexpr (!std::is_void_v<typename S::result>) check_encodable<typename S::result>();
  check_encodable<typename S::args>();
}

// Converts one task's argument tuple. Throws SerializationError naming the task, what
// arrived and the parameter types when it does not convert (a caller's Remote<Sig>
// whose arguments are not the task's); only that path builds the message.
template <class Args>
Args convert_args(const msgpack::object& o, const std::string& task) {
  try {
    return convert_value<Args>(o);
  } catch (const std::exception&) {
    throw SerializationError("task '" + task + "' was called with " + describe_object(o) +
                             ", which does not convert to its parameters " + type_name<Args>());
  }
}

// f(int) -> int, the tasks of a map of small numbers: arguments decoded a block at a
// time, values encoded straight into the output. Returns how many tasks it ran; it stops
// at the first argument that is not a plain integer, which run_chunk takes from there.
template <auto F>
std::uint32_t run_integers(Reader& args, std::uint32_t count, ChunkOutput& out,
                           const std::string& name) {
  using A = std::tuple_element_t<0, typename signature<decltype(F)>::args>;
  constexpr std::uint32_t kBlock = 256;
  A xs[kBlock];
  std::uint32_t i = 0;
  while (i < count) {
    const std::uint32_t want = std::min(kBlock, count - i);
    const auto got = static_cast<std::uint32_t>(args.next_integer_tuples(xs, want));
    char* const begin = out.values.tail(std::size_t{9} * got);
    char* p = begin;
    for (std::uint32_t j = 0; j < got; ++j) {
      try {
        p += encode_integer(p, F(xs[j]));
      } catch (...) {
        *p++ = static_cast<char>(0xc0);  // nil
        out.errors.emplace_back(i + j, describe_current_exception(name));
      }
    }
    out.values.commit(static_cast<std::size_t>(p - begin));
    i += got;
    if (got < want) break;
  }
  return i;
}

template <auto F>
void run_chunk(Reader& args, std::uint32_t count, ChunkOutput& out, const std::string& name) {
  using S = signature<decltype(F)>;
  Packer packer(out.values);
  std::uint32_t i = 0;
  if constexpr (is_integer_tuple1<typename S::args>() && plain_integer<typename S::result>)
    i = run_integers<F>(args, count, out, name);
  for (; i < count; ++i) {
    typename S::args tuple;
    try {
      if constexpr (is_integer_tuple1<typename S::args>()) {
        if (!args.next_integer_tuple(std::get<0>(tuple)))
          tuple = convert_args<typename S::args>(args.next(), name);
      } else {
        tuple = convert_args<typename S::args>(args.next(), name);
      }
    } catch (...) {
      // The stream is unreadable from here on: every remaining task fails the same way.
      for (; i < count; ++i) {
        packer.pack_nil();
        out.errors.emplace_back(i, describe_current_exception(name));
      }
      return;
    }
    try {
      if constexpr (std::is_void_v<typename S::result>) {
        std::apply(F, std::move(tuple));
        packer.pack_nil();
      } else if constexpr (plain_integer<typename S::result>) {
        pack_integer(out.values, std::apply(F, std::move(tuple)));
      } else {
        packer.pack(std::apply(F, std::move(tuple)));
      }
    } catch (...) {
      packer.pack_nil();
      out.errors.emplace_back(i, describe_current_exception(name));
    }
  }
}

template <auto F>
bool register_task(const char* name) {
  check_signature<decltype(F)>();
  return Registry::instance().add(name, reinterpret_cast<const void*>(F), &run_chunk<F>);
}

}  // namespace detail
}  // namespace mqpool

#define MQPOOL_DETAIL_CAT2(a, b) a##b
#define MQPOOL_DETAIL_CAT(a, b) MQPOOL_DETAIL_CAT2(a, b)

// Registers `fn` under the name `name` (a string literal). Use at namespace scope, in a
// .cpp file: it runs during static initialisation. Does not compile unless fn is a
// non-overloaded free (or static member) function of encodable types. A name registered
// twice makes the Pool constructor throw std::logic_error (a worker program exits with
// code 1). What fn throws reaches the caller as TaskError (SerializationError as
// itself): docs/API.md, Registering tasks and Errors.
#define MQPOOL_TASK_AS(fn, name)                                                     \
  namespace {                                                                        \
  [[maybe_unused]] const bool MQPOOL_DETAIL_CAT(mqpool_task_registered_, __LINE__) = \
      ::mqpool::detail::register_task<&(fn)>(name);                                  \
  }                                                                                  \
  static_assert(true, "")

// Registers `fn` under its own spelling, e.g. MQPOOL_TASK(square) registers "square";
// otherwise as MQPOOL_TASK_AS.
#define MQPOOL_TASK(fn) MQPOOL_TASK_AS(fn, #fn)
