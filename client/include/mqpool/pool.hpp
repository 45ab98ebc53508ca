// mqpool::Pool: Python's multiprocessing.Pool over a ZeroMQ broker (docs/API.md).
#pragma once

#include <cstdint>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "mqpool/async_result.hpp"
#include "mqpool/detail/jobs.hpp"
#include "mqpool/options.hpp"
#include "mqpool/registry.hpp"
#include "mqpool/result_stream.hpp"

namespace mqpool {

namespace detail {

// A registered function pointer or a Remote<Sig> handle: its name and signature.
template <class F>
struct TaskRef {
  using Fn = std::decay_t<F>;
  using Sig = signature<Fn>;
  using R = typename Sig::result;
  using Args = typename Sig::args;
  static_assert((check_signature<Fn>(), true));

  static std::string name(const F& f) {
    if constexpr (requires { f.name(); }) {
      return f.name();
    } else {
      const std::string* n = Registry::instance().name_of(reinterpret_cast<const void*>(+f));
      if (n == nullptr)
        throw UnknownTaskError(
            "function is not registered: add MQPOOL_TASK(fn) in the program that calls it");
      return *n;
    }
  }
};

template <class F>
using result_of_t = typename TaskRef<F>::R;

struct PoolInternals;  // white-box tests only: reaches a Pool's core

inline void check_chunksize(int chunksize) {
  if (chunksize < 0)
    throw std::invalid_argument("chunksize must be >= 0 (0 = automatic), got " +
                                std::to_string(chunksize));
}

// Python's rule, ceil(n / (4 * workers)); explicit sizes are kept as given.
inline std::uint32_t chunksize_for(int requested, std::size_t n, int workers) {
  if (requested > 0) return static_cast<std::uint32_t>(requested);
  const std::size_t per = 4 * static_cast<std::size_t>(std::max(workers, 1));
  return static_cast<std::uint32_t>(std::max<std::size_t>(1, (n + per - 1) / per));
}

// Packs one input as the argument tuple Args: as it is when it already has the
// parameter's type, converted to it otherwise (so the worker decodes what it expects).
template <class Args, class X>
void add_arg(ChunkWriter& w, const X& x) {
  static_assert(std::tuple_size_v<Args> == 1,
                "mqpool: map/imap need a function of one argument; use starmap for more");
  using P = std::tuple_element_t<0, Args>;
  if constexpr (std::is_same_v<std::decay_t<X>, P>)
    w.add(std::tuple<const P&>(x));
  else
    w.add(Args(P(x)));
}

// Whether map's inputs are contiguous integers of f's own parameter type, which
// ChunkWriter::add_integers encodes in one loop.
template <bool Star, class Args, class In>
constexpr bool integers_as_they_are() {
  if constexpr (Star || std::tuple_size_v<Args> != 1 || !std::ranges::contiguous_range<In>) {
    return false;
  } else {
    using P = std::tuple_element_t<0, Args>;
    return plain_integer<P> && std::is_same_v<std::ranges::range_value_t<In>, P>;
  }
}

// Packs one starmap input (a tuple of arguments) as Args.
template <class Args, class X>
void add_star(ChunkWriter& w, const X& x) {
  if constexpr (std::is_same_v<std::decay_t<X>, Args>)
    w.add(x);
  else
    w.add(std::make_from_tuple<Args>(x));
}

// Automatic chunks are also cut at about this many argument bytes, so results stream back.
// Small enough that a chunk's results (for small values about 1.5 times its arguments)
// stay below glibc's initial mmap threshold (128 KiB): ZeroMQ's I/O thread then receives
// them into heap memory that is reused, not into fresh pages (docs/PERFORMANCE.md has
// what larger chunks cost map_tiny).
inline constexpr std::size_t kAutoChunkBytes = 40 << 10;

// map() encodes ahead of the outcomes by at most this many argument bytes, or four
// chunks per worker when those are larger: enough to keep every worker fed, little
// enough that large inputs are not copied whole, and that their buffers are reused.
inline constexpr std::size_t kMapBytesInFlight = 64 << 20;

// Counts what a map has submitted, and holds its encoding back (wait) while more than
// the bound above has no outcome yet. The bound is in bytes, the outcomes in tasks: the
// bytes of the tasks in flight are estimated from the mean size of the tasks sent.
class MapPacer {
 public:
  explicit MapPacer(int workers) : workers_(static_cast<std::size_t>(std::max(workers, 1))) {}
  void sent(const std::vector<EncodedChunk>& chunks) {
    for (const auto& c : chunks) {
      bytes_ += c.args.size();
      tasks_ += c.count;
      ++chunks_;
    }
  }
  template <class Job>
  void wait(const Job& job) const {
    if (tasks_ == 0) return;
    const std::size_t limit = std::max(kMapBytesInFlight, 4 * workers_ * bytes_ / chunks_);
    for (std::size_t done = job.answered(); in_flight_bytes(done) > limit; done = job.answered())
      job.wait_answered_above(done);
  }

 private:
  std::size_t in_flight_bytes(std::size_t answered) const {
    const std::size_t tasks = tasks_ - std::min(tasks_, answered);
    return static_cast<std::size_t>(static_cast<double>(tasks) * static_cast<double>(bytes_) /
                                    static_cast<double>(tasks_));
  }
  std::size_t workers_;
  std::size_t bytes_ = 0, tasks_ = 0, chunks_ = 0;
};

}  // namespace detail

// A pool of worker processes. Submitting calls are thread-safe; close(), terminate()
// and join() may be called from any thread, but of them only close() from a callback.
// Not copyable or movable. Exceptions and thread rules in detail: docs/API.md, Errors
// and Thread safety.
class Pool {
 public:
  // A local pool's constructor starts processes: it forks a worker agent, which forks the
  // worker processes (and later their replacements). Each is a copy of this program
  // holding only the forking thread. mqpool forks so that its own locks, spdlog's
  // console loggers and the ZeroMQ contexts of Pools are usable in the workers (docs/API.md,
  // "Local pools"), but a lock of yours that another thread holds at that moment stays
  // held in the workers for ever: a task taking it deadlocks. Make the Pool before you
  // start threads that hold locks across long operations, or accept that risk. A
  // cluster pool (PoolOptions::connect) forks nothing.
  //
  // Every constructor throws std::logic_error if a task name was registered twice, and a
  // local one std::system_error or zmq::error_t if it cannot be set up. A local pool
  // returns without waiting for its workers. Callable from any thread.
  //
  // A local pool of hardware_concurrency() processes.
  Pool();
  // A local pool of `processes` processes (0 = hardware_concurrency()).
  // Throws std::invalid_argument if processes < 0.
  explicit Pool(int processes);
  // Throws std::invalid_argument for an option out of range (docs/API.md, PoolOptions).
  // With `connect`, blocks until the broker answers: ConnectionError if none does within
  // connect_timeout, or if the endpoint refuses. It does not wait for workers.
  explicit Pool(PoolOptions options);
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  // close() then join(), unless terminated: blocks until every submitted task has
  // finished (a task that never ends keeps it waiting; call terminate() first to stop
  // them instead). Never throws. An imap ResultStream that outlives the Pool postpones
  // this to the stream's destruction.
  ~Pool();

  // Runs f(args...) on a worker; blocks until it has finished, then returns its result
  // or rethrows its error (TaskError, WorkerLostError, ...: docs/API.md, Errors). Throws
  // as apply_async too. Thread-safe; not from a callback of this pool.
  template <class F, class... A>
  auto apply(const F& f, A&&... args) {
    return apply_async(f, std::forward<A>(args)...).get();
  }

  // Submits f(args...) and returns its AsyncResult; does not block (the arguments are
  // encoded on this thread). Throws UnknownTaskError if f is not registered and
  // PoolStateError after close() or terminate(); the task's own error comes from get().
  // Thread-safe.
  template <class F, class... A>
  AsyncResult<detail::result_of_t<F>> apply_async(const F& f, A&&... args) {
    using R = detail::result_of_t<F>;
    return submit_one<R>(f, typename detail::TaskRef<F>::Args(std::forward<A>(args)...),
                         Callbacks<R>{});
  }

  // As apply_async; exactly one callback runs, on the pool's delivery thread, before the
  // result becomes ready (docs/API.md, Callbacks).
  template <class F, class... A>
  AsyncResult<detail::result_of_t<F>> apply_async(const F& f, std::tuple<A...> args,
                                                  Callbacks<detail::result_of_t<F>> cb) {
    using R = detail::result_of_t<F>;
    return submit_one<R>(
        f, std::make_from_tuple<typename detail::TaskRef<F>::Args>(std::move(args)), std::move(cb));
  }

  // f over every input, results in input order (nothing for a void f). Blocks until every
  // task has finished, then rethrows the error of the lowest-index failed task. Throws as
  // apply_async, std::invalid_argument if chunksize < 0, std::logic_error if a sized
  // range's size() was wrong, and what the input range throws. Thread-safe.
  template <class F, std::ranges::input_range In>
  detail::MapResult<detail::result_of_t<F>> map(const F& f, In&& inputs, int chunksize = 0) {
    auto state = submit_map<false>(f, std::forward<In>(inputs),
                                   MapOptions<detail::result_of_t<F>>{chunksize, {}, {}}, true);
    state->wait();
    return state->take();
  }
  // map without waiting for the tasks: reads and submits the whole input on this
  // thread, throwing as map does for that, and returns an AsyncResult of the results
  // (AsyncResult<void> for a void f); task errors come from get(). Thread-safe.
  template <class F, std::ranges::input_range In>
  AsyncResult<detail::MapResult<detail::result_of_t<F>>> map_async(
      const F& f, In&& inputs, MapOptions<detail::result_of_t<F>> opts = {}) {
    return AsyncResult<detail::MapResult<detail::result_of_t<F>>>(
        submit_map<false>(f, std::forward<In>(inputs), std::move(opts), false));
  }
  // As map, each input a std::tuple of arguments. Blocks; thread-safe.
  template <class F, std::ranges::input_range In>
  detail::MapResult<detail::result_of_t<F>> starmap(const F& f, In&& inputs, int chunksize = 0) {
    auto state = submit_map<true>(f, std::forward<In>(inputs),
                                  MapOptions<detail::result_of_t<F>>{chunksize, {}, {}}, true);
    state->wait();
    return state->take();
  }
  // As map_async, each input a std::tuple of arguments. Thread-safe.
  template <class F, std::ranges::input_range In>
  AsyncResult<detail::MapResult<detail::result_of_t<F>>> starmap_async(
      const F& f, In&& inputs, MapOptions<detail::result_of_t<F>> opts = {}) {
    return AsyncResult<detail::MapResult<detail::result_of_t<F>>>(
        submit_map<true>(f, std::forward<In>(inputs), std::move(opts), false));
  }

  // A ResultStream of the results in input order as they become ready; reads `inputs`
  // lazily, the first window before returning (so it may throw what the range throws),
  // and does not wait for results. Throws UnknownTaskError, PoolStateError, and
  // std::invalid_argument if chunksize < 0; task errors come from the stream.
  // Thread-safe.
  template <class F, std::ranges::input_range In>
  ResultStream<detail::result_of_t<F>> imap(const F& f, In&& inputs, int chunksize = 1) {
    return stream(f, std::forward<In>(inputs), chunksize, true);
  }
  // As imap, the results in completion order.
  template <class F, std::ranges::input_range In>
  ResultStream<detail::result_of_t<F>> imap_unordered(const F& f, In&& inputs, int chunksize = 1) {
    return stream(f, std::forward<In>(inputs), chunksize, false);
  }

  // No new work (later submitting calls throw PoolStateError); submitted work still
  // runs. Returns at once; may be called more than once, also from a callback.
  void close();
  // No new work; running tasks are stopped at once; unfinished results fail with
  // PoolStateError and their error_callbacks run. Blocks until they have failed (local:
  // until the worker processes are reaped). Not from a callback.
  void terminate();
  // Blocks until every submitted task has its outcome and the worker processes have
  // exited. Throws PoolStateError unless close() or terminate() was called first; a
  // second join() returns at once. Not from a callback (it would never return).
  void join();

 private:
  template <class R, class F, class Tuple>
  AsyncResult<R> submit_one(const F& f, Tuple&& args, Callbacks<R> cb) {
    auto job = std::make_shared<detail::ApplyJob<R>>(std::move(cb), detail::TaskRef<F>::name(f));
    std::shared_ptr<detail::ResultState<R>> state(job, &job->state());
    const std::uint64_t id = detail::new_job(*core_);
    detail::ChunkWriter w(1, 0);
    w.add(args);
    // The job holds the one copy of the name; submit's own reference keeps it alive.
    const std::string& name = job->task();
    detail::submit(*core_, id, std::move(job), name, w.take(), true);
    return AsyncResult<R>(std::move(state));
  }

  // `pace` (map and starmap, which block anyway): for a sized input, encoding waits while
  // the arguments submitted without outcomes exceed detail::kMapBytesInFlight, so that
  // a map over large inputs holds a bounded encoded copy of them and reuses its buffers.
  template <bool Star, class F, class In>
  std::shared_ptr<detail::ResultState<detail::MapResult<detail::result_of_t<F>>>> submit_map(
      const F& f, In&& inputs, MapOptions<detail::result_of_t<F>> opts, bool pace) {
    using R = detail::result_of_t<F>;
    using Args = typename detail::TaskRef<F>::Args;
    detail::check_chunksize(opts.chunksize);
    const std::string name = detail::TaskRef<F>::name(f);
    const std::uint64_t id = detail::new_job(*core_);
    auto state = std::make_shared<detail::ResultState<detail::MapResult<R>>>();
    auto add = [](detail::ChunkWriter& w, const auto& x) {
      if constexpr (Star)
        detail::add_star<Args>(w, x);
      else
        detail::add_arg<Args>(w, x);
    };
    const std::size_t cap = opts.chunksize == 0 ? detail::kAutoChunkBytes : 0;
    if constexpr (std::ranges::sized_range<In>) {
      // The size is known: chunks are sent as they are encoded, so the workers start
      // while the rest of the input is still being encoded; at least one per worker at a
      // time, so that one submission starts every idle worker (a submitter that loses its
      // CPU to the first worker's task must not leave the others waiting for it, which
      // cpu_efficiency measured with one chunk per submission).
      const std::size_t n = std::ranges::size(inputs);
      auto job = std::make_shared<detail::MapJob<R>>(state, std::move(opts), n, name);
      if (n == 0) {
        job->finish_empty();
        return state;
      }
      const int workers = detail::workers(*core_);
      const std::uint32_t cs = detail::chunksize_for(job->chunksize(), n, workers);
      detail::ChunkWriter w(cs, cap);
      detail::MapPacer pacer(workers);
      auto send_closed = [&] {
        if (w.closed() < static_cast<std::size_t>(workers)) return;
        auto chunks = w.take_closed();
        if (pace) pacer.sent(chunks);
        detail::submit(*core_, id, job, name, std::move(chunks), false);
        if (pace) pacer.wait(*job);
      };
      try {
        if constexpr (detail::integers_as_they_are<Star, Args, In>()) {
          const auto* data = std::ranges::data(inputs);
          for (std::size_t i = 0; i < n; send_closed()) i += w.add_integers(data + i, n - i);
        } else {
          for (auto&& x : inputs) {
            if (w.next() == n) size_lied(n, "more");
            add(w, x);
            send_closed();
          }
          if (w.next() != n) size_lied(n, std::to_string(w.next()));
        }
      } catch (...) {
        // The input threw (or lied): what was sent runs and is dropped, and the job's
        // record and results go now; the caller gets the exception.
        detail::abandon(*core_, id);
        throw;
      }
      detail::submit(*core_, id, job, name, w.take(), true);
    } else {
      // Unknown size: encode everything first (Python's map takes list(iterable) too);
      // automatic chunks are then cut by bytes only.
      detail::ChunkWriter w(
          opts.chunksize > 0 ? static_cast<std::uint32_t>(opts.chunksize) : std::uint32_t{1} << 30,
          cap);
      for (auto&& x : inputs) add(w, x);
      auto job = std::make_shared<detail::MapJob<R>>(state, std::move(opts), w.next(), name);
      if (w.next() == 0) {
        job->finish_empty();
        return state;
      }
      detail::submit(*core_, id, job, name, w.take(), true);
    }
    return state;
  }

  [[noreturn]] static void size_lied(std::size_t n, const std::string& yielded) {
    throw std::logic_error("map: the input range yielded " + yielded +
                           " items but its size() said " + std::to_string(n));
  }

  template <class F, class In>
  ResultStream<detail::result_of_t<F>> stream(const F& f, In&& inputs, int chunksize,
                                              bool ordered) {
    using R = detail::result_of_t<F>;
    detail::check_chunksize(chunksize);
    const std::string name = detail::TaskRef<F>::name(f);
    const auto cs = static_cast<std::uint32_t>(std::max(chunksize, 1));
    auto view = std::views::all(std::forward<In>(inputs));
    using View = decltype(view);
    using Args = typename detail::TaskRef<F>::Args;
    struct Reading {
      View view;
      std::optional<std::ranges::iterator_t<View>> it;  // begin() is taken on first read
    };
    auto reading = std::make_shared<Reading>(Reading{std::move(view), std::nullopt});
    auto pull = [reading](detail::ChunkWriter& w) {
      if (!reading->it) reading->it.emplace(std::ranges::begin(reading->view));
      auto& it = *reading->it;
      if (it == std::ranges::end(reading->view)) return false;
      detail::add_arg<Args>(w, *it);
      ++it;
      return true;
    };
    const std::uint64_t window =
        std::max<std::uint64_t>(4096, std::uint64_t{cs} * 4 * detail::workers(*core_));
    return ResultStream<R>(core_, name, ordered, cs, window, std::move(pull));
  }

  friend struct detail::PoolInternals;
  std::shared_ptr<detail::PoolCore> core_;
};

}  // namespace mqpool
