// The cluster example's client: calls the example tasks (tasks.cpp) on a running
// cluster by name, without linking them, checks every answer and reports who served.
//
//   mqpool-example-client [ENDPOINT] [--tasks N] [--ms MS] [--expect-hosts K] [--timeout S]
//
// ENDPOINT is the broker's client endpoint: the argument, else $MQPOOL_CONNECT, else
// tcp://127.0.0.1:5555. With CURVE (docs/SECURITY.md), $MQPOOL_CURVE_SECRET names this
// client's secret key file and $MQPOOL_BROKER_KEY the broker's public key file. The client maps
// `where` over N inputs [2000] that take MS milliseconds of CPU each [4], in parts of 100 submitted
// at once.
//
// Output, a stable contract (tests and scripts read it; stdout, every line flushed):
//   progress N/M hosts H             after each part: N of M answers in, from H hosts
//   served HOST pid PID: K answers   at the end, one line per worker agent that served
//   hosts H: HOST...                 at the end, the H distinct hosts that served
//   all M answers correct            at the end, only when every answer was right
// Wrong answers and errors go to stderr. Exit status: 0 every answer right (and with
// --expect-hosts K at least K distinct hosts served); 1 a wrong answer or an error (no
// broker: ConnectionError; not done within --timeout S [300]: TimeoutError); 2 bad
// usage; 3 every answer right but fewer than K hosts served.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mqpool/mqpool.hpp>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace {

using namespace std::chrono;
using Answer = std::tuple<std::int64_t, std::string, std::int64_t>;  // x * x, host, agent pid

// Handles to the workers' tasks: their names and signatures (tasks.cpp), not their code.
const mqpool::Remote<std::int64_t(std::int64_t)> square{"square"};
const mqpool::Remote<std::int64_t(std::int64_t, std::int64_t)> slow_square{"slow_square"};
const mqpool::Remote<Answer(std::int64_t, std::int64_t)> where{"where"};

struct Args {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::int64_t tasks = 2000, ms = 4, expect_hosts = 0, timeout_s = 300;
};

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// The command line, or nullopt after a message on stderr.
std::optional<Args> parse(int argc, char** argv) {
  Args a;
  if (const char* env = std::getenv("MQPOOL_CONNECT"); env != nullptr && *env != '\0')
    a.endpoint = env;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::int64_t* number = arg == "--tasks"          ? &a.tasks
                           : arg == "--ms"           ? &a.ms
                           : arg == "--expect-hosts" ? &a.expect_hosts
                           : arg == "--timeout"      ? &a.timeout_s
                                                     : nullptr;
    if (number != nullptr && i + 1 < argc) {
      const std::string v = argv[++i];
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), *number);
      if (ec == std::errc{} && end == v.data() + v.size() && *number >= 0) continue;
    } else if (number == nullptr && !arg.starts_with("-")) {
      a.endpoint = arg;
      continue;
    }
    std::cerr << "usage: " << argv[0]
              << " [ENDPOINT] [--tasks N] [--ms MS] [--expect-hosts K] [--timeout S]\n";
    return std::nullopt;
  }
  return a;
}

// The example's work; returns the exit status. Throws mqpool::Error.
int run(mqpool::Pool& pool, const Args& args) {
  // Single calls first: they show at once whether the workers know the tasks.
  if (pool.apply(square, 7) != 49 || pool.apply(slow_square, 8, 1) != 64) {
    std::cerr << "wrong answer from square or slow_square\n";
    return 1;
  }

  // Every part is submitted before the first is awaited, so the workers never run dry.
  // chunksize 1: tasks of a few ms are worth spreading over the executors one by one.
  constexpr std::int64_t kPart = 100;
  std::vector<mqpool::AsyncResult<std::vector<Answer>>> parts;
  for (std::int64_t first = 0; first < args.tasks; first += kPart) {
    std::vector<std::tuple<std::int64_t, std::int64_t>> inputs;
    for (std::int64_t x = first; x < std::min(first + kPart, args.tasks); ++x)
      inputs.emplace_back(x, args.ms);
    parts.push_back(pool.starmap_async(where, inputs, {.chunksize = 1}));
  }

  const auto deadline = steady_clock::now() + seconds(args.timeout_s);
  std::map<std::pair<std::string, std::int64_t>, std::int64_t> served;  // answers per agent
  std::set<std::string> hosts;
  std::int64_t done = 0, wrong = 0;
  for (const auto& part : parts) {
    const auto left = std::max(duration_cast<milliseconds>(deadline - steady_clock::now()), 0ms);
    for (const auto& [value, host, pid] : part.get(left)) {  // TimeoutError when time is up
      const std::int64_t x = done++;  // parts and their answers are in input order
      if (value != x * x) {
        ++wrong;
        std::cerr << "wrong answer: where(" << x << ") = " << value << " from " << host << '\n';
      }
      ++served[{host, pid}];
      hosts.insert(host);
    }
    std::cout << "progress " << done << '/' << args.tasks << " hosts " << hosts.size() << std::endl;
  }

  for (const auto& [agent, count] : served)
    std::cout << "served " << agent.first << " pid " << agent.second << ": " << count
              << " answers\n";
  std::cout << "hosts " << hosts.size() << ':';
  for (const auto& host : hosts) std::cout << ' ' << host;
  std::cout << std::endl;
  if (wrong > 0) {
    std::cerr << wrong << " of " << done << " answers wrong\n";
    return 1;
  }
  std::cout << "all " << done << " answers correct" << std::endl;
  if (static_cast<std::int64_t>(hosts.size()) < args.expect_hosts) {
    std::cerr << "only " << hosts.size() << " hosts served; expected " << args.expect_hosts << '\n';
    return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Args> args = parse(argc, argv);
  if (!args) return 2;
  try {
    // A cluster pool: the same calls as a local one. Throws ConnectionError when no
    // broker answers within PoolOptions::connect_timeout (10 s).
    mqpool::PoolOptions options{.connect = args->endpoint};
    options.curve_secret_file = env_or_empty("MQPOOL_CURVE_SECRET");
    options.broker_key_file = env_or_empty("MQPOOL_BROKER_KEY");
    mqpool::Pool pool(options);
    try {
      return run(pool, *args);
    } catch (...) {
      pool.terminate();  // or ~Pool would wait for the tasks still out there
      throw;
    }
  } catch (const std::exception& e) {
    std::cerr << "mqpool-example-client: " << e.what() << '\n';
    return 1;
  }
}
