// Pieces the lanes share: inputs, callbacks that record what they saw, and the check
// that exactly the right callback ran.
#pragma once

#include <atomic>
#include <memory>
#include <mqpool/mqpool.hpp>
#include <string>
#include <vector>

#include "checks.hpp"
#include "lanes.hpp"
#include "tasks.hpp"

namespace soak {

// base, base + 1, ..., base + n - 1.
std::vector<std::int64_t> consecutive(std::int64_t base, std::int64_t n);
std::optional<std::int64_t> first_rejected(const std::vector<std::int64_t>& xs);
std::vector<std::int64_t> apply_all(const std::vector<std::int64_t>& xs,
                                    std::int64_t (*f)(std::int64_t));
// soak.picky over xs: its values, or the TaskError of the lowest rejected input.
Expect<std::vector<std::int64_t>> picky_map(const std::vector<std::int64_t>& xs);
// A round's number of inputs (1..max_n) and chunksize (automatic or 1 to 64, divided by
// `chunk_div`). During the warm-up half the rounds take max_n inputs in chunks of one
// (the most chunks, so the most memory in the broker and the client): every process's
// allocator then reaches its high-water mark before the first RSS reading, and later
// rounds, no larger, compare with it. A random walk of sizes would otherwise set new
// records now and then for the whole run, growth that is not a leak.
struct Shape {
  std::int64_t n = 1;
  int chunksize = 0;
};
Shape shape(const Soak& s, std::uint64_t& rng, std::int64_t max_n, int chunk_div = 1);

// A payload size: mostly small, sometimes tens of KiB.
std::size_t payload_size(std::uint64_t& rng);
// " (N inputs from B, chunksize C)"
std::string inputs(std::int64_t n, std::int64_t base, int chunksize);

// What the callbacks of one call saw. Written on the pool's delivery thread before the
// result is ready, read after get() returned (the result's own lock orders the two).
template <class T>
struct Seen {
  std::atomic<int> values{0};
  std::atomic<int> errors{0};
  T value{};
  std::string error;
};

template <class T>
mqpool::Callbacks<T> callbacks_for(const std::shared_ptr<Seen<T>>& seen) {
  return {.callback =
              [seen](const T& v) {
                seen->value = v;
                ++seen->values;
              },
          .error_callback =
              [seen](const mqpool::Error& e) {
                seen->error = e.what();
                ++seen->errors;
              }};
}

template <class R>
mqpool::MapOptions<R> map_options_for(int chunksize,
                                      const std::shared_ptr<Seen<std::vector<R>>>& seen) {
  mqpool::Callbacks<std::vector<R>> cb = callbacks_for(seen);
  return {.chunksize = chunksize,
          .callback = std::move(cb.callback),
          .error_callback = std::move(cb.error_callback)};
}

// Exactly one callback ran: `callback` with the value, or `error_callback` with the error.
template <class T>
void check_seen(Soak& s, const Call& c, const Seen<T>& seen, Outcome o, const Expect<T>& e) {
  const int values = seen.values, errors = seen.errors;
  if (values + errors != 1)
    throw Failure(c.what + ": " + std::to_string(values) + " callbacks and " +
                  std::to_string(errors) + " error_callbacks ran, expected exactly one");
  if (o == Outcome::value && values != 1)
    throw Failure(c.what + ": returned its value, but error_callback ran with '" + seen.error +
                  "'");
  if (o == Outcome::value && seen.value != *e.value)
    throw Failure(c.what + ": its callback got " + difference(seen.value, *e.value));
  if (o != Outcome::value && errors != 1)
    throw Failure(c.what + ": failed, but its callback ran instead of error_callback");
  if (o == Outcome::task_error &&
      seen.error.find(rejection_message(*e.reject)) == std::string::npos)
    throw Failure(c.what + ": error_callback got '" + seen.error + "', expected the rejection of " +
                  std::to_string(*e.reject));
  s.count(Kind::callbacks);
}

// An apply_async call waiting to be checked.
template <class T>
struct Pending {
  Call c;
  Expect<T> e;
  mqpool::AsyncResult<T> r;
  std::shared_ptr<Seen<T>> seen;
};

template <class T, class F, class A>
void submit(Soak& s, const Target& t, std::vector<Pending<T>>& out, const F& f, A arg, Expect<T> e,
            std::string what) {
  auto seen = std::make_shared<Seen<T>>();
  Call c = call(s, std::move(what));
  auto r = t.pool->apply_async(f, std::tuple{std::move(arg)}, callbacks_for<T>(seen));
  out.push_back(Pending<T>{std::move(c), std::move(e), std::move(r), std::move(seen)});
}

template <class T>
void settle(Soak& s, const Target& t, Lane& lane, Pending<T>& p) {
  lane.begin(p.c.what + ".get");
  const Outcome o = check(s, t, p.c, p.e, [&] { return p.r.get(kWait); });
  lane.end();
  check_seen(s, p.c, *p.seen, o, p.e);
  count_failure_outcome(s, o);
  s.count(Kind::apply_async);
}

}  // namespace soak
