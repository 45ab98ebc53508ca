// `mqpool bench`: the workloads of shared/bench/README.md on one pool, printed as JSON
// lines in the format of shared/bench/peers.py. Sizes and warm-up follow peers.py; every
// workload checks its answers and a wrong answer fails the run.
#include "bench.hpp"

#include <fcntl.h>
#include <spawn.h>
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
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mqpool/mqpool.hpp>
#include <numeric>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

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

double burn_or_die(LossInput in) {
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

}  // namespace

MQPOOL_TASK_AS(square, "bench.square");
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
};

Sizes quick_sizes() {
  return Sizes{.n_map = 100'000,
               .n_async = 10'000,
               .n_imap = 5'000,
               .n_lat = 200,
               .n_burn = 20,
               .n_payload = 8,
               .n_lazy = 500'000,
               .n_loss = 400};
}

// A workload computed a wrong answer.
struct WrongAnswer : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check(bool ok, const std::string& what) {
  if (!ok) throw WrongAnswer(what);
}

// ---- output: one JSON object per line, formatted as Python's json.dumps does ----
using Number = std::variant<std::int64_t, double>;
using Params = std::vector<std::pair<std::string_view, Number>>;

std::string json_number(Number n) {
  if (const auto* i = std::get_if<std::int64_t>(&n)) return std::to_string(*i);
  const double v = std::round(std::get<double>(n) * 1000.0) / 1000.0;  // round(value, 3)
  if (!std::isfinite(v)) throw std::runtime_error("a figure is not finite");
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";  // Python prints 3.0, not 3
  return s;
}

void emit(std::string_view workload, double value, std::string_view unit, const Params& params) {
  std::string line = R"({"system": "mqpool", "workload": ")";
  line.append(workload).append(R"(", "value": )").append(json_number(value));
  line.append(R"(, "unit": ")").append(unit).append(R"(", "params": {)");
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (i) line += ", ";
    line.append("\"").append(params[i].first).append("\": ").append(json_number(params[i].second));
  }
  line += "}}\n";
  std::cout << line << std::flush;
}

// ---- the workloads ----
struct Context {
  Pool& pool;
  std::int64_t procs;
  const Sizes& sizes;
};

std::vector<std::int64_t> range_vector(std::int64_t n) {
  std::vector<std::int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), std::int64_t{0});
  return v;
}

// As peers.py: a small map first, so that start-up is not measured.
void warm_up(Pool& pool) {
  const auto out = pool.map(square, range_vector(1000));
  check(out.size() == 1000 && out[999] == 999 * 999, "warm-up map returned wrong squares");
}

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
  emit("map_tiny", n / dt, "items/s", {{"n", n}, {"procs", c.procs}});
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
  emit("apply_async_tiny", n / dt, "tasks/s", {{"n", n}, {"procs", c.procs}});
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
  emit("imap_chunk1", n / dt, "items/s", {{"n", n}, {"procs", c.procs}});
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
  emit("apply_latency_p50", p50, "us", {{"n", n}});
  emit("apply_latency_p99", p99, "us", {{"n", n}});
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
  emit("cpu_efficiency", 100.0 * ideal / dt, "%", {{"tasks", m}, {"ms", ms}, {"procs", c.procs}});
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
  emit("payload_echo", 2.0 * static_cast<double>(k * size) / dt / 1e6, "MB/s",
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
  emit("imap_lazy_rss", peak_rss_mib(), "MiB",
       {{"n", n}, {"chunksize", std::int64_t{chunksize}}, {"procs", c.procs}});
}

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
  char dir_template[] = "/tmp/mqpool-bench-loss-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr)
    throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  const std::string dir = dir_template;
  struct Cleanup {
    const std::string& path;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } cleanup{dir};

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
  emit("worker_loss_map", ratios[kPairs / 2], "%",
       {{"n", n}, {"ms", kMs}, {"procs", c.procs}, {"pairs", std::int64_t{kPairs}}});
}

struct Workload {
  std::string_view name;  // as selected on the command line
  void (*run)(Context&);
  bool own_process;  // measures the process's peak memory: runs in a fresh process
};

// In run order. imap_lazy_rss comes first: it measures before anything else allocates.
// apply_latency prints two lines, apply_latency_p50 and apply_latency_p99.
// clang-format off
constexpr Workload kWorkloads[] = {
    {"imap_lazy_rss", run_imap_lazy_rss, true},
    {"map_tiny", run_map_tiny, false},
    {"apply_async_tiny", run_apply_async_tiny, false},
    {"imap_chunk1", run_imap_chunk1, false},
    {"apply_latency", run_apply_latency, false},
    {"cpu_efficiency", run_cpu_efficiency, false},
    {"payload_echo", run_payload_echo, false},
    {"worker_loss_map", run_worker_loss_map, false},
};
// clang-format on

// EXTENSION POINT: workloads of bench/README.md that come with later issues. To add
// one, write run_<name>(Context&) above, add it to kWorkloads and remove it from here.
// Until then, asking for one by name exits 2 with a clear message.
//  - cluster_apply_async_tiny: apply_async_tiny against a separate `mqpool broker` and
//    `mqpool worker` (spawned from /proc/self/exe) over tcp loopback (tasks/s).
constexpr std::pair<std::string_view, std::string_view> kPlanned[] = {
    {"cluster_apply_async_tiny", "comes with cluster mode"},
};

std::string valid_names() {
  std::string s;
  for (const auto& w : kWorkloads) s.append(s.empty() ? "" : ", ").append(w.name);
  return s + " (apply_latency_p50 and apply_latency_p99 select apply_latency)";
}

// The selected workloads in run order, or an error message.
std::variant<std::vector<const Workload*>, std::string> select_workloads(
    const std::vector<std::string>& names) {
  std::vector<const Workload*> selected;
  for (const auto& w : kWorkloads) {
    const bool wanted =
        names.empty() || std::ranges::any_of(names, [&](std::string_view n) {
          return n == w.name || (w.name == "apply_latency" && n.starts_with("apply_latency_p"));
        });
    if (wanted) selected.push_back(&w);
  }
  for (std::string_view n : names) {
    for (const auto& [planned, why] : kPlanned) {
      if (n == planned)
        return "workload " + std::string(n) + " is not implemented yet in this version: it " +
               std::string(why);
    }
    const bool known =
        std::ranges::any_of(kWorkloads, [&](const Workload& w) { return w.name == n; }) ||
        n == "apply_latency_p50" || n == "apply_latency_p99";
    if (!known) return "unknown workload '" + std::string(n) + "'; valid: " + valid_names();
  }
  return selected;
}

// Runs `bench [same options] NAME` in a fresh process of this executable, sharing stdout.
// Throws if it cannot start or fails.
void run_in_own_process(const BenchOptions& opts, std::string_view name) {
  std::vector<std::string> args{"mqpool", "bench", "--processes", std::to_string(opts.processes)};
  if (opts.quick) args.emplace_back("--quick");
  if (!opts.connect.empty()) args.insert(args.end(), {"--connect", opts.connect});
  args.emplace_back(name);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::cout.flush();
  pid_t pid = 0;
  if (const int err = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ))
    throw std::runtime_error("cannot start a fresh process: " + std::string(std::strerror(err)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("its process failed (wait status " + std::to_string(status) + ")");
}

PoolOptions pool_options(const BenchOptions& opts) {
  PoolOptions po;
  po.processes = opts.processes;
  po.connect = opts.connect;
  return po;
}

}  // namespace

void add_bench_options(CLI::App& sub, BenchOptions& opts) {
  sub.add_option("--processes", opts.processes, "worker processes [cores]")
      ->check(CLI::NonNegativeNumber);
  sub.add_option("--connect", opts.connect, "a broker's client endpoint (default: a local pool)");
  sub.add_flag("--quick", opts.quick,
               "small sizes, a few seconds in all (CI: proves every workload runs)");
  sub.add_option("workload", opts.workloads, "workloads to run [all]: " + valid_names());
}

int run_bench(const BenchOptions& opts) {
  auto selection = select_workloads(opts.workloads);
  if (auto* error = std::get_if<std::string>(&selection)) {
    std::cerr << "mqpool bench: " << *error << '\n';
    return 2;
  }
  const auto& selected = std::get<0>(selection);
  const Sizes sizes = opts.quick ? quick_sizes() : Sizes{};
  const std::int64_t procs =
      opts.processes > 0 ? opts.processes : std::max(1u, std::thread::hardware_concurrency());
  std::unique_ptr<Pool> pool;  // one pool for all workloads, as peers.py, made when first needed
  for (const Workload* w : selected) {
    try {
      if (w->own_process && selected.size() > 1) {
        run_in_own_process(opts, w->name);
        continue;
      }
      if (!pool) pool = std::make_unique<Pool>(pool_options(opts));
      warm_up(*pool);
      Context context{*pool, procs, sizes};
      w->run(context);
    } catch (const WrongAnswer& e) {
      std::cerr << "mqpool bench: " << w->name << ": WRONG ANSWER: " << e.what() << '\n';
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "mqpool bench: " << w->name << ": " << e.what() << '\n';
      return 1;
    }
  }
  return 0;
}

}  // namespace mqpool::cli
