// BrokerCore at scale (issue 4, item 3; issue 15, item 5): a grid of simulated executor
// and client counts, every TASK answered with a DONE. Prints the dispatch rate and the
// broker's cost per dispatched chunk for each cell, then that cost as one table per
// scenario (executors down, clients across); exits non-zero only if a chunk got no
// RESULT or more than one (the figures are never pass/fail).
//
//   bench_broker_scale [--executors 10,100,1000,10000] [--clients 1,10,100,1000]
//                      [--chunks 200000] [--batch 100] [--credit 2]
//
// Clients submit in turn, a SUBMIT of `batch` chunks at a time; with more clients than
// chunks / batch the SUBMITs are smaller, so that every client has work.
// Two scenarios per cell, both with single-task chunks:
//   steady  clients submit a batch at a time and executors answer at once: a shallow
//           queue and mostly idle executors (the ready-list's idle bucket is hot);
//   deep    every chunk is submitted first, then executors answer one TASK at a time:
//           a deep queue and every executor saturated.
// Each runs twice: executors asking for one chunk per TASK (max_bundle 1), so that the
// cost per chunk is the cost per dispatch, and letting the broker bundle (max_bundle 0).
// Only the time spent inside BrokerCore calls is counted as the broker's cost; building
// and decoding the simulated peers' messages is not.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/core.hpp"
#include "common/protocol.hpp"

namespace {

namespace proto = mqpool::proto;
using mqpool::broker::BrokerCore;
using mqpool::broker::Clock;
using mqpool::broker::TimePoint;
using proto::Cmd;

struct Options {
  std::vector<std::size_t> executors{10, 100, 1000, 10000};
  std::vector<std::size_t> clients{1, 10, 100, 1000};
  std::size_t chunks = 200000;
  std::size_t batch = 100;
  std::uint32_t credit = 2;
};

struct Figures {
  std::size_t task_messages = 0, dispatched = 0, results = 0;
  double broker_s = 0, wall_s = 0;
  std::vector<std::string> errors;
};

class Simulation {
 public:
  Simulation(const Options& o, std::size_t clients, std::size_t executors, std::uint32_t max_bundle)
      : o_(o),
        clients_(clients),
        batch_(std::clamp<std::size_t>(o.chunks / clients, 1, o.batch)),
        next_seq_(clients, 0),
        seen_(clients) {
    for (std::size_t c = 0; c < clients; ++c) {
      client_ids_.push_back("client-" + std::to_string(c));
      client_index_[client_ids_.back()] = c;
      core_.on_client(
          proto::make(Cmd::hello, proto::Hello{c, client_ids_.back(), 1000, 3}, client_ids_.back()),
          now_);
    }
    constexpr std::size_t kPerAgent = 16;  // executors per simulated host
    for (std::size_t i = 0; i < executors; ++i) {
      const std::uint64_t agent = i / kPerAgent + 1;
      const auto pid = static_cast<std::uint32_t>(i + 1000);
      if (i % kPerAgent == 0)
        timed([&] {
          core_.on_worker(
              proto::make(Cmd::agent_hello, proto::AgentHello{agent, 1, "host", {"fn"}, 1, 1000, 3},
                          proto::agent_id(agent)),
              now_);
        });
      timed([&] {
        core_.on_worker(
            proto::make(Cmd::ready, proto::Ready{agent, pid, "host", o.credit, max_bundle},
                        proto::executor_id(agent, pid)),
            now_);
      });
    }
    (void)core_.take_outbox();  // the WELCOMEs
    f_ = Figures{};             // joining is not dispatch
    broker_ = Clock::duration::zero();
  }

  Figures run(bool deep) {
    const auto start = Clock::now();
    if (deep) {
      while (submitted_ < o_.chunks) submit_batch();
      drain();
      for (std::size_t i = 0; i < pending_.size(); ++i) {  // grows as DONEs free credit
        answer(pending_[i]);
        drain();
      }
    } else {
      while (f_.results < o_.chunks) {
        const std::size_t before = f_.results + pending_.size();
        if (submitted_ < o_.chunks) submit_batch();
        drain();
        std::vector<proto::Message> round;
        round.swap(pending_);
        for (auto& m : round) answer(m);
        drain();
        if (submitted_ >= o_.chunks && f_.results < o_.chunks &&
            f_.results + pending_.size() == before) {
          f_.errors.push_back("stalled with " + std::to_string(o_.chunks - f_.results) +
                              " chunks left");
          break;
        }
      }
    }
    f_.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
    f_.broker_s = std::chrono::duration<double>(broker_).count();
    check();
    return f_;
  }

 private:
  template <class F>
  void timed(F&& f) {
    const auto t0 = Clock::now();
    f();
    broker_ += Clock::now() - t0;
  }

  void submit_batch() {
    const std::size_t c = next_client_++ % clients_;
    std::vector<proto::ChunkSpec> specs;
    std::vector<zmq::message_t> frames;
    for (std::size_t i = 0; i < batch_ && submitted_ < o_.chunks; ++i, ++submitted_) {
      const std::uint64_t seq = next_seq_[c]++;
      specs.push_back(proto::ChunkSpec{0, seq, 1, "fn", 0, 3});
      const unsigned char args[] = {0x91, static_cast<unsigned char>(seq & 0x7f)};  // (seq % 128,)
      frames.emplace_back(args, sizeof args);
    }
    seen_[c].resize(next_seq_[c], 0);
    proto::Message m = proto::make(Cmd::submit, specs, client_ids_[c]);
    m.frames = std::move(frames);
    timed([&] { core_.on_client(std::move(m), now_); });
  }

  void drain() {
    std::vector<mqpool::broker::Outgoing> out;
    timed([&] {
      core_.on_tick(now_);
      out = core_.take_outbox();
    });
    for (auto& o : out) {
      if (o.msg.cmd == Cmd::task) {
        ++f_.task_messages;
        pending_.push_back(std::move(o.msg));
      } else if (o.msg.cmd == Cmd::result) {
        record(o.msg);
      } else {
        error("unexpected command " + std::to_string(int(o.msg.cmd)));
      }
    }
  }

  void answer(proto::Message& task) {
    const auto specs = proto::decode<std::vector<proto::TaskSpec>>(task);
    std::vector<std::uint64_t> ids;
    proto::Message done = proto::make(Cmd::done, ids, task.peer);
    for (const auto& s : specs) {
      if (s.count != 1) error("a TASK chunk with count " + std::to_string(s.count));
      ids.push_back(s.chunk);
      done.frames.emplace_back();                          // no errors
      done.frames.emplace_back(std::string_view("\xc0"));  // one nil value
    }
    f_.dispatched += specs.size();
    done.header = proto::encode(ids);
    timed([&] { core_.on_worker(std::move(done), now_); });
  }

  void record(const proto::Message& m) {
    const auto it = client_index_.find(m.peer);
    const auto specs = proto::decode<std::vector<proto::ResultSpec>>(m);
    if (it == client_index_.end() || specs.empty() || m.frames.size() != 2 * specs.size())
      return error("a malformed or misaddressed RESULT");
    for (std::size_t i = 0; i < specs.size(); ++i) {
      if (specs[i].count != 1 || m.frames[2 * i + 1].size() != 1 || m.frames[2 * i].size() != 0)
        return error("a malformed RESULT chunk");
      auto& seen = seen_[it->second];
      if (specs[i].seq >= seen.size() || seen[specs[i].seq]++ != 0)
        return error("a second RESULT for seq " + std::to_string(specs[i].seq));
      ++f_.results;  // counts chunks answered, one RESULT message may carry several
    }
  }

  void check() {
    for (std::size_t c = 0; c < clients_; ++c)
      for (std::uint64_t s = 0; s < next_seq_[c]; ++s)
        if (seen_[c][s] != 1)
          error(client_ids_[c] + " seq " + std::to_string(s) + ": " +
                std::to_string(int(seen_[c][s])) + " RESULTs");
    if (f_.results != o_.chunks)
      error(std::to_string(f_.results) + " RESULTs for " + std::to_string(o_.chunks));
    if (core_.queued() != 0 || core_.running() != 0) error("chunks left in the broker");
    if (core_.counters().duplicates != 0) error("duplicates counted");
  }

  void error(std::string what) {
    if (f_.errors.size() < 10) f_.errors.push_back(std::move(what));
  }

  const Options& o_;
  std::size_t clients_;
  std::size_t batch_;  // chunks per SUBMIT
  BrokerCore core_;
  TimePoint now_ = TimePoint{} + std::chrono::hours(1);
  Clock::duration broker_{};
  Figures f_;
  std::vector<std::string> client_ids_;
  std::unordered_map<std::string, std::size_t> client_index_;
  std::vector<std::uint64_t> next_seq_;
  std::vector<std::vector<std::uint8_t>> seen_;
  std::vector<proto::Message> pending_;
  std::size_t next_client_ = 0, submitted_ = 0;
};

std::vector<std::size_t> parse_list(const std::string& s) {
  std::vector<std::size_t> out;
  for (std::size_t pos = 0; pos <= s.size();) {
    const std::size_t comma = std::min(s.find(',', pos), s.size());
    out.push_back(std::strtoull(s.substr(pos, comma - pos).c_str(), nullptr, 10));
    pos = comma + 1;
  }
  return out;
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--executors")
      o.executors = parse_list(v);
    else if (k == "--clients")
      o.clients = parse_list(v);
    else if (k == "--chunks")
      o.chunks = std::strtoull(v, nullptr, 10);
    else if (k == "--batch")
      o.batch = std::strtoull(v, nullptr, 10);
    else if (k == "--credit")
      o.credit = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else
      return false;
  }
  const auto positive = [](const std::vector<std::size_t>& l) {
    return !l.empty() && std::ranges::all_of(l, [](std::size_t n) { return n > 0; });
  };
  return argc % 2 == 1 && o.batch > 0 && o.chunks > 0 && positive(o.clients) &&
         positive(o.executors);
}

// One scenario of one cell: which, and the broker's cost per dispatched chunk.
struct Cell {
  std::size_t clients, executors;
  bool deep;
  std::uint32_t max_bundle;
  double ns_per_chunk;
};

// Runs one scenario of one cell and prints its row; counts its errors into `failures`.
Cell run_cell(const Options& o, std::size_t clients, std::size_t executors, bool deep,
              std::uint32_t max_bundle, int& failures) {
  Simulation sim(o, clients, executors, max_bundle);
  const Figures f = sim.run(deep);
  const double per_task_msg =
      f.task_messages ? double(f.dispatched) / double(f.task_messages) : 0.0;
  const double ns = f.dispatched ? f.broker_s * 1e9 / double(f.dispatched) : 0.0;
  std::printf("%9zu %7zu %-7s %10u %9zu %11.2f %10.3f %12.0f %11.0f\n", executors, clients,
              deep ? "deep" : "steady", max_bundle, f.task_messages, per_task_msg, f.broker_s,
              f.broker_s > 0 ? double(f.dispatched) / f.broker_s : 0.0, ns);
  std::fflush(stdout);
  for (const auto& e : f.errors) {
    std::printf("  ERROR: %s\n", e.c_str());
    ++failures;
  }
  return Cell{clients, executors, deep, max_bundle, ns};
}

// ns per chunk of one scenario: a row per executor count, a column per client count.
void print_grid(const Options& o, const std::vector<Cell>& cells, bool deep,
                std::uint32_t max_bundle) {
  std::printf("\nns per chunk, %s queue, max_bundle %u (executors down, clients across)\n",
              deep ? "deep" : "steady", max_bundle);
  std::printf("%9s", "");
  for (std::size_t c : o.clients) std::printf(" %9zu", c);
  std::printf("\n");
  for (std::size_t e : o.executors) {
    std::printf("%9zu", e);
    for (std::size_t c : o.clients) {
      const auto it = std::ranges::find_if(cells, [&](const Cell& x) {
        return x.clients == c && x.executors == e && x.deep == deep && x.max_bundle == max_bundle;
      });
      std::printf(" %9.0f", it == cells.end() ? 0.0 : it->ns_per_chunk);
    }
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: %s [--executors N,M,...] [--clients N,M,...] [--chunks N] [--batch N] "
                 "[--credit N]\n",
                 argv[0]);
    return 2;
  }
  std::printf(
      "BrokerCore dispatch: %zu single-task chunks, SUBMIT batches of up to %zu, credit %u\n\n",
      o.chunks, o.batch, o.credit);
  std::printf("%9s %7s %-7s %10s %9s %11s %10s %12s %11s\n", "executors", "clients", "queue",
              "max_bundle", "TASK msgs", "chunks/TASK", "broker s", "chunks/s", "ns/chunk");
  int failures = 0;
  std::vector<Cell> cells;
  for (std::size_t c : o.clients)
    for (std::size_t n : o.executors)
      for (bool deep : {false, true})
        for (std::uint32_t max_bundle : {1u, 0u})
          cells.push_back(run_cell(o, c, n, deep, max_bundle, failures));
  for (bool deep : {false, true})
    for (std::uint32_t max_bundle : {1u, 0u}) print_grid(o, cells, deep, max_bundle);
  std::printf("\n%s\n", failures == 0 ? "every chunk got exactly one RESULT" : "FAILED");
  return failures == 0 ? 0 : 1;
}
