// `mqpool bench`: the benchmark's workloads (docs/PERFORMANCE.md), printed as JSON lines
// in the format the Python peers print, with their sizes and warm-up; every workload
// checks its answers and a wrong answer fails the run.
//
// Where the workloads run:
//  - By default, on one local pool; and cluster_apply_async_tiny / cluster_map_tiny on a
//    cluster the bench starts itself (LocalCluster): a `mqpool broker` process and one
//    `mqpool worker` agent (both this executable, so the agent has the bench's tasks) on
//    tcp loopback, and a Pool connected to the broker. They run exactly as
//    apply_async_tiny / map_tiny (same sizes, warm-up and checks); only the pool differs.
//    Nothing is started when neither cluster workload is selected.
//  - With --connect EP, every workload runs on the cluster at EP. There the cluster_*
//    workloads are the plain ones: naming cluster_map_tiny selects map_tiny (run once, not
//    twice), printed as map_tiny, and a note on stderr says so. Every line's params name
//    the endpoint ("connect").
#include "bench.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mqpool/mqpool.hpp>
#include <numeric>
#include <optional>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "common/host.hpp"

extern char** environ;

// ---- the tasks (workers run them; a local pool's workers inherit this registry) ----
namespace {

std::int64_t square(std::int64_t x) { return x * x; }

// Spins the CPU for `ms` milliseconds; returns the milliseconds actually spun.
double burn(double ms) {
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double, std::milli>(ms);
  auto now = start;
  while (now < end) now = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(now - start).count();
}

std::vector<char> echo(std::vector<char> bytes) { return bytes; }

// One input of worker_loss_map: burn `ms`; then, if `marker` names a file that does not
// exist yet, create it and SIGKILL this worker process (so only the first try dies and
// the retry succeeds).
struct LossInput {
  double ms = 0;
  std::string marker;
  MSGPACK_DEFINE(ms, marker)
};

double burn_or_die(const LossInput& in) {
  const double spun = burn(in.ms);
  if (!in.marker.empty()) {
    const int fd = ::open(in.marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::close(fd);
      ::kill(::getpid(), SIGKILL);
    }
  }
  return spun;
}

// One blocker of apply_async_memory: says it has started (the file started-INDEX in
// `dir`), then waits until dir/release exists, so that its worker takes nothing else
// meanwhile. It gives up once `dir` is gone: a bench that failed has removed it, and a
// cluster's worker must not wait for ever. False if it could not say it had started.
struct HoldInput {
  std::string dir;
  std::int64_t index = 0;
  MSGPACK_DEFINE(dir, index)
};

bool hold(const HoldInput& in) {
  const std::string started = in.dir + "/started-" + std::to_string(in.index);
  const int fd = ::open(started.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  ::close(fd);
  const std::string release = in.dir + "/release";
  while (::access(release.c_str(), F_OK) != 0) {
    if (::access(in.dir.c_str(), F_OK) != 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

MQPOOL_TASK_AS(square, "bench.square");
MQPOOL_TASK_AS(hold, "bench.hold");
MQPOOL_TASK_AS(burn, "bench.burn");
MQPOOL_TASK_AS(echo, "bench.echo");
MQPOOL_TASK_AS(burn_or_die, "bench.burn_or_die");

namespace mqpool::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// peers.py's defaults; --quick divides them so that the whole run takes seconds.
struct Sizes {
  std::int64_t n_map = 1'000'000;
  std::int64_t n_async = 100'000;
  std::int64_t n_imap = 100'000;
  std::int64_t n_lat = 2000;
  std::int64_t n_burn = 200;
  double burn_ms = 10.0;
  std::int64_t n_payload = 64;
  std::int64_t payload_bytes = 4 << 20;
  std::int64_t n_lazy = 10'000'000;
  int lazy_chunksize = 1000;   // chunksize 1 would measure imap_chunk1's rate, not memory
  std::int64_t n_loss = 2000;  // worker_loss_map: burn(1) tasks
  std::int64_t n_outstanding = 1'000'000;  // apply_async_memory: calls outstanding at once
};

Sizes quick_sizes() {
  return Sizes{.n_map = 100'000,
               .n_async = 10'000,
               .n_imap = 5'000,
               .n_lat = 200,
               .n_burn = 20,
               .n_payload = 8,
               .n_lazy = 500'000,
               .n_loss = 400,
               .n_outstanding = 50'000};
}

Sizes bench_sizes(const BenchOptions& opts) {
  Sizes s = opts.quick ? quick_sizes() : Sizes{};
  if (opts.payload_bytes > 0) {
    constexpr std::int64_t kTotal = std::int64_t{256} << 20;
    s.payload_bytes = opts.payload_bytes;
    s.n_payload = std::clamp<std::int64_t>(kTotal / opts.payload_bytes, 4, 4096);
  }
  return s;
}

// A workload computed a wrong answer.
struct WrongAnswer : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check(bool ok, const std::string& what) {
  if (!ok) throw WrongAnswer(what);
}

// ---- output: one JSON object per line, formatted as Python's json.dumps does ----
using Value = std::variant<std::int64_t, double, std::string_view>;
using Params = std::vector<std::pair<std::string_view, Value>>;

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + '"';
}

std::string json_value(const Value& n) {
  if (const auto* s = std::get_if<std::string_view>(&n)) return json_string(*s);
  if (const auto* i = std::get_if<std::int64_t>(&n)) return std::to_string(*i);
  const double v = std::round(std::get<double>(n) * 1000.0) / 1000.0;  // round(value, 3)
  if (!std::isfinite(v)) throw std::runtime_error("a figure is not finite");
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";  // Python prints 3.0, not 3
  return s;
}

// ---- the workloads ----
struct Context {
  Pool& pool;
  std::int64_t procs;
  const Sizes& sizes;
  std::string_view prefix;  // before every workload name printed: "cluster_" or ""
  Params tags = {};         // after every line's own params: where the pool runs
};

// Prints one result line: workload c.prefix + `workload`, params `params` + c.tags.
void emit(const Context& c, std::string_view workload, double value, std::string_view unit,
          Params params) {
  params.insert(params.end(), c.tags.begin(), c.tags.end());
  std::string line = R"({"system": "mqpool", "workload": )";
  line.append(json_string(std::string(c.prefix).append(workload)));
  line.append(R"(, "value": )").append(json_value(value));
  line.append(R"(, "unit": )").append(json_string(unit)).append(R"(, "params": {)");
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (i) line += ", ";
    line.append(json_string(params[i].first)).append(": ").append(json_value(params[i].second));
  }
  line += "}}\n";
  std::cout << line << std::flush;
}

std::vector<std::int64_t> range_vector(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), std::int64_t{0});
  return v;
}

// As peers.py: a small map first, so that start-up is not measured.
constexpr std::int64_t kWarmUpSize = 1000;

void check_warm_up(const std::vector<std::int64_t>& out) {
  check(std::ssize(out) == kWarmUpSize && out.back() == (kWarmUpSize - 1) * (kWarmUpSize - 1),
        "warm-up map returned wrong squares");
}

void warm_up(Pool& pool) { check_warm_up(pool.map(square, range_vector(kWarmUpSize))); }

void run_map_tiny(Context& c) {
  const auto n = c.sizes.n_map;
  const auto in = range_vector(n);
  const auto t0 = Clock::now();
  const auto out = c.pool.map(square, in);
  const double dt = seconds_since(t0);
  check(std::ssize(out) == n, "map returned " + std::to_string(out.size()) + " results");
  for (std::int64_t i = 0; i < n; ++i) {
    if (out[i] != i * i) throw WrongAnswer("map: wrong square at index " + std::to_string(i));
  }
  emit(c, "map_tiny", static_cast<double>(n) / dt, "items/s", {{"n", n}, {"procs", c.procs}});
}

void run_apply_async_tiny(Context& c) {
  const auto n = c.sizes.n_async;
  std::vector<AsyncResult<std::int64_t>> results;
  results.reserve(static_cast<std::size_t>(n));
  bool ok = true;
  const auto t0 = Clock::now();
  for (std::int64_t i = 0; i < n; ++i) results.push_back(c.pool.apply_async(square, i));
  for (std::int64_t i = 0; i < n; ++i) ok &= results[i].get() == i * i;
  const double dt = seconds_since(t0);
  check(ok, "apply_async returned a wrong square");
  emit(c, "apply_async_tiny", static_cast<double>(n) / dt, "tasks/s",
       {{"n", n}, {"procs", c.procs}});
}

void run_imap_chunk1(Context& c) {
  const auto n = c.sizes.n_imap;
  std::int64_t i = 0;
  bool ok = true;
  const auto t0 = Clock::now();
  for (std::int64_t v : c.pool.imap(square, std::views::iota(std::int64_t{0}, n), 1)) {
    ok &= v == i * i;
    ++i;
  }
  const double dt = seconds_since(t0);
  check(ok && i == n, "imap returned wrong, unordered or missing squares");
  emit(c, "imap_chunk1", static_cast<double>(n) / dt, "items/s", {{"n", n}, {"procs", c.procs}});
}

void run_apply_latency(Context& c) {
  const auto n = c.sizes.n_lat;
  std::vector<double> us;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    const auto v = c.pool.apply(square, i);
    us.push_back(seconds_since(t0) * 1e6);
    if (v != i * i) throw WrongAnswer("apply: wrong square for " + std::to_string(i));
  }
  std::sort(us.begin(), us.end());
  const auto m = us.size() / 2;  // statistics.median: the mean of the middle two when even
  const double p50 = us.size() % 2 ? us[m] : (us[m - 1] + us[m]) / 2;
  const double p99 = us[static_cast<std::size_t>(static_cast<double>(n) * 0.99) - 1];
  emit(c, "apply_latency_p50", p50, "us", {{"n", n}});
  emit(c, "apply_latency_p99", p99, "us", {{"n", n}});
}

void run_cpu_efficiency(Context& c) {
  const auto m = c.sizes.n_burn;
  const double ms = c.sizes.burn_ms;
  const std::vector<double> in(static_cast<std::size_t>(m), ms);
  const auto t0 = Clock::now();
  const auto out = c.pool.map(burn, in, 1);
  const double dt = seconds_since(t0);
  check(std::ssize(out) == m, "map(burn) returned " + std::to_string(out.size()) + " results");
  for (double spun : out) check(spun >= ms, "a burn task returned early");
  const double ideal = static_cast<double>(m) * ms / 1000.0 / static_cast<double>(c.procs);
  emit(c, "cpu_efficiency", 100.0 * ideal / dt, "%",
       {{"tasks", m}, {"ms", ms}, {"procs", c.procs}});
}

std::vector<char> random_bytes(std::size_t size, std::mt19937_64& rng) {
  std::vector<char> b(size);
  for (std::size_t i = 0; i < size; i += 8) {
    const std::uint64_t r = rng();
    std::copy_n(reinterpret_cast<const char*>(&r), std::min<std::size_t>(8, size - i), &b[i]);
  }
  return b;
}

void run_payload_echo(Context& c) {
  const auto k = c.sizes.n_payload;
  const auto size = c.sizes.payload_bytes;
  std::mt19937_64 rng(std::random_device{}());
  std::vector<std::vector<char>> data;
  for (std::int64_t i = 0; i < k; ++i) data.push_back(random_bytes(size, rng));
  const auto t0 = Clock::now();
  const auto out = c.pool.map(echo, data, 1);
  const double dt = seconds_since(t0);
  check(out == data, "echo did not return the bytes it was given");
  emit(c, "payload_echo", 2.0 * static_cast<double>(k * size) / dt / 1e6, "MB/s",
       {{"items", k}, {"bytes", size}});
}

// The client's peak resident memory (VmHWM) in MiB. It is the process's peak, so this
// workload runs in a process of its own (see run_bench).
double peak_rss_mib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  throw std::runtime_error("no VmHWM in /proc/self/status");
}

void run_imap_lazy_rss(Context& c) {
  const auto n = c.sizes.n_lazy;
  const int chunksize = c.sizes.lazy_chunksize;
  std::int64_t i = 0;
  bool ok = true;
  for (std::int64_t v : c.pool.imap(square, std::views::iota(std::int64_t{0}, n), chunksize)) {
    ok &= v == i * i;
    ++i;
  }
  check(ok && i == n, "imap over a lazy range returned wrong, unordered or missing squares");
  emit(c, "imap_lazy_rss", peak_rss_mib(), "MiB",
       {{"n", n}, {"chunksize", std::int64_t{chunksize}}, {"procs", c.procs}});
}

// A fresh directory /tmp/mqpool-bench-WHAT-XXXXXX for the marker files through which
// tasks and the bench signal each other; removed with everything in it on every path.
class TempDir {
 public:
  explicit TempDir(std::string_view what) {
    std::string name = "/tmp/mqpool-bench-" + std::string(what) + "-XXXXXX";
    if (::mkdtemp(name.data()) == nullptr)
      throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    path_ = std::move(name);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// map(burn(1)) over n inputs, automatic chunksize: timed as it is, then again with the
// task at index n/2 SIGKILLing its own worker process (on its first try only: a marker
// file), which the pool must absorb (retry, replacement). Both runs use the same task
// and inputs but for the one marker. Three such pairs, interleaved; the value is the
// median of the three ratios with-kill / without (one 1 s map is at the mercy of noise
// on a shared machine; a pair measured back to back is less so).
void run_worker_loss_map(Context& c) {
  const auto n = c.sizes.n_loss;
  constexpr double kMs = 1.0;
  constexpr int kPairs = 3;
  // Markers no earlier run can have made. On a cluster the workers must share this /tmp
  // (one host): otherwise no kill happens, and the check below fails the workload.
  const TempDir tmp("loss");
  const std::string& dir = tmp.path();

  auto timed_map = [&](const std::string& marker) {
    std::vector<LossInput> in(static_cast<std::size_t>(n), LossInput{kMs, ""});
    in[static_cast<std::size_t>(n / 2)].marker = marker;
    const auto t0 = Clock::now();
    const auto out = c.pool.map(burn_or_die, in);
    const double dt = seconds_since(t0);
    check(std::ssize(out) == n, "worker_loss_map: map returned " + std::to_string(out.size()) +
                                    " results, not " + std::to_string(n));
    for (std::int64_t i = 0; i < n; ++i)
      check(out[i] >= kMs, "worker_loss_map: task " + std::to_string(i) + " returned early");
    return dt;
  };
  std::vector<double> ratios;
  for (int k = 0; k < kPairs; ++k) {
    const std::string marker = dir + "/kill-" + std::to_string(k);
    const double without = timed_map("");
    const double with = timed_map(marker);
    check(::access(marker.c_str(), F_OK) == 0,
          "worker_loss_map: the task at the middle did not kill its worker process");
    ratios.push_back(100.0 * with / without);
  }
  std::sort(ratios.begin(), ratios.end());
  emit(c, "worker_loss_map", ratios[kPairs / 2], "%",
       {{"n", n}, {"ms", kMs}, {"procs", c.procs}, {"pairs", std::int64_t{kPairs}}});
}

// The process's resident memory now (not its peak), in bytes.
std::int64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::int64_t size = 0, resident = -1;
  statm >> size >> resident;
  if (resident < 0) throw std::runtime_error("cannot read /proc/self/statm");
  return resident * static_cast<std::int64_t>(::sysconf(_SC_PAGESIZE));
}

// Blocks until every file in `paths` exists; throws if one does not within `timeout`.
void wait_for_files(const std::vector<std::string>& paths, std::chrono::seconds timeout,
                    const std::string& what) {
  const auto deadline = Clock::now() + timeout;
  for (const auto& p : paths) {
    while (::access(p.c_str(), F_OK) != 0) {
      if (Clock::now() > deadline)
        throw std::runtime_error(what + " within " + std::to_string(timeout.count()) + " s");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

void create_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  ::close(fd);
}

// The client's memory per outstanding apply_async: every worker is first held busy by a
// bench.hold call, so that the n apply_async(square, i) calls that follow all stay
// outstanding; the growth of the client's resident memory over those n calls, handles
// included, divided by n, is the figure. Then the holders are released and every result
// checked. An executor the bench does not know of (a cluster with more executors than
// --processes) would answer calls early and make the figure too small: that fails the
// workload.
void run_apply_async_memory(Context& c) {
  const auto n = c.sizes.n_outstanding;
  const TempDir tmp("memory");
  std::vector<AsyncResult<bool>> holders;
  std::vector<std::string> started;
  for (std::int64_t k = 0; k < c.procs; ++k) {
    holders.push_back(c.pool.apply_async(hold, HoldInput{tmp.path(), k}));
    started.push_back(tmp.path() + "/started-" + std::to_string(k));
  }
  wait_for_files(started, std::chrono::seconds(30), "not every worker took a holding call");
  const std::int64_t before = resident_bytes();
  std::vector<AsyncResult<std::int64_t>> results;
  for (std::int64_t i = 0; i < n; ++i) results.push_back(c.pool.apply_async(square, i));
  const std::int64_t after = resident_bytes();
  const auto answered = std::ranges::count_if(results, [](const auto& r) { return r.ready(); });
  create_file(tmp.path() + "/release");
  for (auto& h : holders) check(h.get(), "a holding call could not say it had started");
  if (answered != 0)
    throw std::runtime_error(std::to_string(answered) +
                             " calls were answered while every worker should have been held "
                             "(more executors than --processes?)");
  bool ok = true;
  for (std::int64_t i = 0; i < n; ++i) ok &= results[i].get() == i * i;
  check(ok, "apply_async returned a wrong square");
  emit(c, "apply_async_memory", static_cast<double>(after - before) / static_cast<double>(n),
       "B/call", {{"n", n}, {"procs", c.procs}});
}

struct Workload {
  std::string_view name;  // as selected on the command line
  void (*run)(Context&);
  bool own_process;  // measures the process's memory: runs in a fresh process
  bool cluster;      // runs on LocalCluster's pool; "cluster_" + the workload `run` prints
};

constexpr std::string_view kClusterPrefix = "cluster_";

// In run order. imap_lazy_rss comes first: it measures before anything else allocates.
// apply_latency prints two lines, apply_latency_p50 and apply_latency_p99. To add a
// workload, write run_<name>(Context&) above and list it here.
// clang-format off
constexpr Workload kWorkloads[] = {
    {"imap_lazy_rss", run_imap_lazy_rss, true, false},
    {"map_tiny", run_map_tiny, false, false},
    {"apply_async_tiny", run_apply_async_tiny, false, false},
    {"imap_chunk1", run_imap_chunk1, false, false},
    {"apply_latency", run_apply_latency, false, false},
    {"cpu_efficiency", run_cpu_efficiency, false, false},
    {"payload_echo", run_payload_echo, false, false},
    {"worker_loss_map", run_worker_loss_map, false, false},
    {"apply_async_memory", run_apply_async_memory, true, false},
    {"cluster_apply_async_tiny", run_apply_async_tiny, false, true},
    {"cluster_map_tiny", run_map_tiny, false, true},
};
// clang-format on

std::string valid_names() {
  std::string s;
  for (const auto& w : kWorkloads) s.append(s.empty() ? "" : ", ").append(w.name);
  return s + " (apply_latency_p50 and apply_latency_p99 select apply_latency)";
}

// True if the command-line name `n` selects the workload called `name`.
bool names_workload(std::string_view n, std::string_view name) {
  return n == name || (name == "apply_latency" && n.starts_with("apply_latency_p"));
}

// The selected workloads in run order, or an error message. With `connected` (--connect),
// a cluster workload selects its plain one instead (see the header comment).
std::variant<std::vector<const Workload*>, std::string> select_workloads(
    const std::vector<std::string>& names, bool connected) {
  for (std::string_view n : names) {
    if (!std::ranges::any_of(kWorkloads,
                             [&](const Workload& w) { return names_workload(n, w.name); }))
      return "unknown workload '" + std::string(n) + "'; valid: " + valid_names();
  }
  auto named = [&](std::string_view name) {
    return names.empty() ||
           std::ranges::any_of(names, [&](std::string_view n) { return names_workload(n, name); });
  };
  std::vector<const Workload*> selected;
  for (const auto& w : kWorkloads) {
    if (connected && w.cluster) continue;
    const std::string twin = std::string(kClusterPrefix).append(w.name);
    if (named(w.name) || (connected && named(twin))) selected.push_back(&w);
  }
  return selected;
}

// ---- child processes: the memory workloads' own, LocalCluster's broker and agent ----

// Starts this executable as `args[0] args[1]...` (args[0]: the name it sees) and returns its
// pid. Its stdout is `stdout_fd`, or ours when -1; its stdin and stderr are ours; it
// inherits no other descriptor, no blocked signal and no signal disposition. Throws if it
// cannot start.
pid_t spawn_self(std::vector<std::string> args, int stdout_fd = -1) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (stdout_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::cout.flush();
  pid_t pid = 0;
  const int err = posix_spawn(&pid, "/proc/self/exe", &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0)
    throw std::runtime_error("cannot start `mqpool " + args.at(1) + "`: " + std::strerror(err));
  return pid;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

// Runs `bench [same options] NAME` in a fresh process of this executable, sharing stdout.
// Throws if it cannot start or fails.
void run_in_own_process(const BenchOptions& opts, std::string_view name) {
  std::vector<std::string> args{"mqpool", "bench", "--processes", std::to_string(opts.processes)};
  if (opts.quick) args.emplace_back("--quick");
  if (opts.payload_bytes > 0)
    args.insert(args.end(), {"--payload-bytes", std::to_string(opts.payload_bytes)});
  if (opts.shared_memory_threshold >= 0)
    args.insert(args.end(),
                {"--shared-memory-threshold", std::to_string(opts.shared_memory_threshold)});
  if (!opts.connect.empty()) args.insert(args.end(), {"--connect", opts.connect});
  if (!opts.keys.curve_secret.empty())
    args.insert(args.end(), {"--curve-secret", opts.keys.curve_secret});
  if (!opts.keys.broker_key.empty())
    args.insert(args.end(), {"--broker-key", opts.keys.broker_key});
  args.emplace_back(name);
  const pid_t pid = spawn_self(std::move(args));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("its process failed (" + describe_status(status) + ")");
}

// A child process `mqpool ARGS...` that this object owns: it ends with the object
// (SIGTERM, then SIGKILL if it is still running kStopTimeout later; always reaped), on
// every path. Its stdout is a pipe that read_line() reads when `capture_stdout`, else our
// stderr: nothing it prints mixes with the JSON lines.
class Child {
 public:
  static constexpr auto kStopTimeout = std::chrono::seconds(5);

  Child(std::string what, std::vector<std::string> args, bool capture_stdout)
      : what_(std::move(what)) {
    int fds[2] = {-1, -1};
    if (capture_stdout && ::pipe2(fds, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
    try {
      pid_ = spawn_self(std::move(args), capture_stdout ? fds[1] : STDERR_FILENO);
    } catch (...) {
      for (const int fd : fds) {
        if (fd >= 0) ::close(fd);
      }
      throw;
    }
    if (capture_stdout) ::close(fds[1]);
    out_ = fds[0];
    // glibc 2.36 declares pidfd_open without extern "C": the system call itself.
    pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));  // -1: stop() kills at once
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  int pidfd() const { return pidfd_; }
  const std::string& what() const { return what_; }
  ~Child() {
    stop();
    if (out_ >= 0) ::close(out_);
    if (pidfd_ >= 0) ::close(pidfd_);
  }

  // The next line of its stdout, without the newline. Throws if none is complete by
  // `deadline`, or if its stdout ends first.
  std::string read_line(Clock::time_point deadline) {
    for (;;) {
      if (const auto nl = pending_.find('\n'); nl != std::string::npos) {
        std::string line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        return line;
      }
      pollfd p{out_, POLLIN, 0};
      const int r = ::poll(&p, 1, ms_until(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw std::runtime_error("poll: " + std::string(std::strerror(errno)));
      if (r == 0) throw std::runtime_error(what_ + " printed no line in time" + ended());
      char buf[512];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        wait_until(deadline);
        throw std::runtime_error(what_ + " closed its stdout before a whole line" + ended());
      }
      pending_.append(buf, static_cast<std::size_t>(n));
    }
  }

  // How it ended ("exited with code 1", "killed by signal 9"), or "" while it runs.
  std::string state() {
    wait_until(Clock::now());
    return status_ ? describe_status(*status_) : "";
  }

  // Ends it: SIGTERM, SIGKILL after kStopTimeout. Idempotent.
  void stop() {
    if (status_) return;
    ::kill(pid_, SIGTERM);
    if (wait_until(Clock::now() + kStopTimeout)) return;
    std::cerr << "mqpool bench: " << what_ << " did not end within "
              << std::chrono::seconds(kStopTimeout).count() << " s of SIGTERM: SIGKILL\n";
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = status;
  }

 private:
  std::string ended() {
    const auto s = state();
    return s.empty() ? "" : " (it " + s + ")";
  }

  static int ms_until(Clock::time_point t) {
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - Clock::now()).count();
    return static_cast<int>(std::clamp<decltype(ms)>(ms, 0, 1 << 30));
  }

  // True once it has ended (and is reaped), waiting for that until `deadline` at most.
  bool wait_until(Clock::time_point deadline) {
    if (status_) return true;
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      while (::poll(&p, 1, ms_until(deadline)) < 0 && errno == EINTR) {
      }
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
    status_ = status;
    return true;
  }

  std::string what_;
  pid_t pid_ = -1;
  int out_ = -1;               // the read end of its stdout, or -1
  int pidfd_ = -1;             // readable once it has ended
  std::string pending_;        // read from out_, not yet returned
  std::optional<int> status_;  // its wait status, once reaped
};

// While it exists, terminates `pool` from a thread of its own as soon as one of the
// processes behind `pidfds` ends: the calls waiting on the pool then fail at once
// instead of waiting forever for a broker or an agent that has died.
class Watchdog {
 public:
  Watchdog(Pool& pool, const std::vector<int>& pidfds) : wake_(::eventfd(0, EFD_CLOEXEC)) {
    if (wake_ < 0) throw std::runtime_error("eventfd: " + std::string(std::strerror(errno)));
    std::vector<pollfd> fds{{wake_, POLLIN, 0}};
    for (const int fd : pidfds) {
      if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    }
    thread_ = std::thread([&pool, fds]() mutable {
      while (::poll(fds.data(), fds.size(), -1) < 0 && errno == EINTR) {
      }
      if (fds[0].revents == 0) pool.terminate();  // a process ended, not ~Watchdog
    });
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_, &one, sizeof one);
    thread_.join();
    ::close(wake_);
  }

 private:
  int wake_;
  std::thread thread_;
};

// The cluster of the cluster_* workloads: a `mqpool broker` on tcp loopback, one `mqpool
// worker` agent with `procs` executors (this executable, so it has the bench's tasks) and
// a Pool connected to the broker, which the agent serves once the constructor returns.
// Ends all three, the pool first (terminated: nothing of it waits), even after a failure.
// Throws if any of them does not start in time. If the broker or the agent ends early,
// the pool is terminated at once (Watchdog) and lost() says which.
class LocalCluster {
 public:
  static constexpr auto kStartTimeout = std::chrono::seconds(10);  // the broker's line
  static constexpr auto kServeTimeout = std::chrono::seconds(30);  // the warm-up map

  explicit LocalCluster(std::int64_t procs)
      : broker_("the broker",
                {"mqpool", "broker", "--frontend", "tcp://127.0.0.1:*", "--backend",
                 "tcp://127.0.0.1:*"},
                true),
        endpoints_(read_endpoints(broker_)),
        worker_("the worker agent",
                {"mqpool", "worker", "--connect", endpoints_.workers, "--processes",
                 std::to_string(procs)},
                false),
        pool_(new Pool(PoolOptions{.connect = endpoints_.clients})),
        watchdog_(*pool_, {broker_.pidfd(), worker_.pidfd()}) {
    try {
      wait_until_serving();
    } catch (const WrongAnswer&) {
      throw;
    } catch (const std::exception& e) {
      throw std::runtime_error(e.what() + lost());
    }
  }

  Pool& pool() { return *pool_; }

  // "" while the broker and the agent run; else " (the broker ended: exited with code 1)".
  std::string lost() {
    for (Child* c : {&broker_, &worker_}) {
      if (auto state = c->state(); !state.empty())
        return " (" + c->what() + " ended: " + state + ")";
    }
    return "";
  }

 private:
  struct Endpoints {
    std::string clients, workers;
  };
  struct Terminate {
    void operator()(Pool* p) const {
      p->terminate();
      delete p;
    }
  };

  // Parses "mqpool broker: clients on EP, workers on EP", the broker's first line.
  static Endpoints read_endpoints(Child& broker) {
    const std::string line = broker.read_line(Clock::now() + kStartTimeout);
    constexpr std::string_view kClients = "mqpool broker: clients on ", kWorkers = ", workers on ";
    const auto sep = line.find(kWorkers);
    if (!line.starts_with(kClients) || sep == std::string::npos)
      throw std::runtime_error("the broker printed '" + line + "', not its endpoints");
    return {line.substr(kClients.size(), sep - kClients.size()),
            line.substr(sep + kWorkers.size())};
  }

  // The warm-up map of the local workloads, which must complete by kServeTimeout. A map
  // refused with UnknownTaskError (the agent has not announced its tasks yet) is sent again.
  void wait_until_serving() {
    const auto deadline = Clock::now() + kServeTimeout;
    for (;;) {
      auto result = pool_->map_async(square, range_vector(kWarmUpSize));
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (!result.wait_for(std::max(left, std::chrono::milliseconds(0))))
        throw std::runtime_error(
            "the cluster at " + endpoints_.clients + " did not serve a warm-up map within " +
            std::to_string(std::chrono::seconds(kServeTimeout).count()) + " s");
      try {
        check_warm_up(result.get());
        return;
      } catch (const UnknownTaskError&) {
        if (Clock::now() >= deadline || !lost().empty()) throw;
      }
    }
  }

  Child broker_;  // declared first, ended last
  Endpoints endpoints_;
  Child worker_;
  std::unique_ptr<Pool, Terminate> pool_;
  Watchdog watchdog_;  // declared last, ended first: it uses pool_
};

PoolOptions pool_options(const BenchOptions& opts) {
  PoolOptions po;
  po.processes = opts.processes;
  po.connect = opts.connect;
  po.curve_secret_file = opts.keys.curve_secret;
  po.broker_key_file = opts.keys.broker_key;
  if (opts.shared_memory_threshold >= 0) po.shared_memory_threshold = opts.shared_memory_threshold;
  return po;
}

}  // namespace

void add_bench_options(CLI::App& sub, BenchOptions& opts) {
  sub.add_option("--processes", opts.processes, "worker processes [cores]")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--connect", opts.connect,
                 "a broker's client endpoint (default: a local pool, and a local broker and "
                 "worker agent for the cluster_* workloads)");
  add_key_options(sub, opts.keys);
  sub.add_flag("--quick", opts.quick,
               "small sizes, a few seconds in all (CI: proves every workload runs)");
  sub.add_option("--payload-bytes", opts.payload_bytes,
                 "payload_echo's item size in bytes [4 MiB, 64 items]; other sizes take as "
                 "many items as make 256 MiB (4 to 4096)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 30));
  sub.add_option("--shared-memory-threshold", opts.shared_memory_threshold,
                 "the local pool's PoolOptions::shared_memory_threshold in bytes, 0 = never "
                 "[the pool's default]")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("workload", opts.workloads, "workloads to run [all]: " + valid_names());
}

int run_bench(const BenchOptions& opts) {
  const bool connected = !opts.connect.empty();
  auto selection = select_workloads(opts.workloads, connected);
  if (auto* error = std::get_if<std::string>(&selection)) {
    std::cerr << "mqpool bench: " << *error << '\n';
    return 2;
  }
  const auto& selected = std::get<0>(selection);
  if (connected &&
      (opts.workloads.empty() || std::ranges::any_of(opts.workloads, [](std::string_view n) {
         return n.starts_with(kClusterPrefix);
       })))
    std::cerr << "mqpool bench: with --connect, the cluster_* workloads are the plain ones "
                 "(every workload runs on the cluster at "
              << opts.connect << ")\n";
  const Sizes sizes = bench_sizes(opts);
  const std::int64_t procs = opts.processes > 0 ? opts.processes : detail::default_processes();
  Params tags = connected ? Params{{"connect", opts.connect}} : Params{};
  if (opts.shared_memory_threshold >= 0)
    tags.emplace_back("shared_memory_threshold", opts.shared_memory_threshold);
  const Params cluster_tags{{"transport", "tcp loopback"}};
  // One pool for all workloads, as peers.py, and one cluster for the cluster_* ones: each
  // made when first needed. Declared in this order, the cluster ends first.
  std::unique_ptr<Pool> pool;
  std::unique_ptr<LocalCluster> cluster;
  for (const Workload* w : selected) {
    try {
      if (w->own_process && selected.size() > 1) {
        run_in_own_process(opts, w->name);
        continue;
      }
      Pool* target = nullptr;
      if (w->cluster) {
        if (!cluster) cluster = std::make_unique<LocalCluster>(procs);
        target = &cluster->pool();
      } else {
        if (!pool) pool = std::make_unique<Pool>(pool_options(opts));
        target = pool.get();
      }
      warm_up(*target);
      Context context{*target, procs, sizes, w->cluster ? kClusterPrefix : "",
                      w->cluster ? cluster_tags : tags};
      w->run(context);
    } catch (const WrongAnswer& e) {
      std::cerr << "mqpool bench: " << w->name << ": WRONG ANSWER: " << e.what() << '\n';
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "mqpool bench: " << w->name << ": " << e.what()
                << (w->cluster && cluster ? cluster->lost() : "") << '\n';
      return 1;
    }
  }
  return 0;
}

}  // namespace mqpool::cli
