// The cluster test's client (netns_test.py runs it in a client namespace): runs --jobs
// jobs of N cluster.work tasks each over tcp to a broker, in one Pool, and checks every
// answer. Job j asks for the indices [(j-1)*N, j*N), so that a stale answer of an earlier
// job is caught as a wrong index.
//
//   mqpool_cluster_client --connect tcp://10.0.0.1:41235 -n 400 --ms 10 --min-hosts 2
//
// stdout, one flushed line each, for the harness to act on mid-job:
//   connected: ENDPOINT after 0.01 s
//   ready: hosts w1,w2 after 0.12 s, 1 rounds   (--wait-hosts: the workers answered)
//   hold: job J ready; waiting for a line on stdin   (--hold: the harness says when)
//   job J: started ...
//   progress K/N i=I host=H pid=P job=J         (K distinct indices answered right)
//   problem: ... | error i=I job=J: ...         (a wrong answer, a failed task)
//   job J: ended after S s, K outcomes
//   hosts J: w1=210 w2=190
//   job J: OK ... | job J: FAILED ...
//   hold: job J ready; waiting for a line on stdin   (--hold: the harness says when)
//   summary: OK ... | summary: FAILED ...       (last line)
// Exit 0 only if in every job each index arrived exactly once with the right value, from
// an expected host, and at least --min-hosts hosts served it. The client has its own
// overall deadline: when it passes, it prints what is missing and exits 3 whatever it was
// doing (even inside ~Pool), so it never hangs. 4: --wait-hosts hosts never answered.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tasks.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using cluster_test::WorkArgs;
using cluster_test::WorkResult;

struct Options {
  std::string connect;
  std::int64_t n = 200;
  int ms = 5;
  int jobs = 1;
  bool hold = false;
  std::string mode = "imap";  // imap (imap_unordered) | apply (apply_async + callbacks)
  int chunksize = 1;
  int min_hosts = 1;
  std::vector<std::string> expect_hosts;  // empty: any host
  int wait_hosts = 0;
  double wait_timeout = 30;
  double deadline = 120;
  int heartbeat_ms = 250;
  int liveness = 3;
  int connect_timeout_ms = 10000;
  int reconnect_timeout_ms = 30000;
  int max_retries = 2;
  std::string label = "client";
};

std::mutex out_mu;
void say(const std::string& line) {
  std::lock_guard lock(out_mu);
  std::cout << line << std::endl;  // flushed: the harness acts on these lines
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", s);
  return buf;
}

// Everything one job has received, shared by the main thread, the pool's callback
// thread (apply mode) and the watchdog. Job j asks for the indices [j*N, (j+1)*N), so that
// an answer that belongs to an earlier job (a stale duplicate) is caught as wrong.
class Tally {
 public:
  Tally(const Options& o, int job)
      : o_(o),
        job_(job),
        first_(static_cast<std::int64_t>(job - 1) * o.n),
        seen_(static_cast<std::size_t>(o.n), 0) {}

  std::int64_t first() const { return first_; }
  int job() const { return job_; }

  // One answer; `submitted` is the index it was asked for (-1: unknown, imap).
  void result(const WorkResult& r, std::int64_t submitted) {
    const auto& [i, square, host, pid] = r;
    std::lock_guard lock(mu_);
    ++outcomes_;
    if (i < first_ || i >= first_ + o_.n || (submitted >= 0 && i != submitted)) {
      problem("wrong index: got " + std::to_string(i) + " (from " + host + ") for task " +
              (submitted >= 0 ? std::to_string(submitted) : std::string("?")) + "; job " +
              std::to_string(job_) + " has [" + std::to_string(first_) + ", " +
              std::to_string(first_ + o_.n) + ")");
      ++wrong_;
      return;
    }
    if (square != i * i) {
      problem("wrong value for i=" + std::to_string(i) + ": " + std::to_string(square) + " from " +
              host);
      ++wrong_;
      return;
    }
    if (!o_.expect_hosts.empty() &&
        std::find(o_.expect_hosts.begin(), o_.expect_hosts.end(), host) == o_.expect_hosts.end()) {
      problem("i=" + std::to_string(i) + " served by unexpected host '" + host + "'");
      ++unexpected_;
    }
    auto& count = seen_[static_cast<std::size_t>(i - first_)];
    if (++count > 1) {
      problem("duplicate: i=" + std::to_string(i) + " arrived " + std::to_string(count) +
              " times (this time from " + host + ")");
      ++duplicates_;
      return;
    }
    ++distinct_;
    ++hosts_[host];
    say("progress " + std::to_string(distinct_) + "/" + std::to_string(o_.n) +
        " i=" + std::to_string(i) + " host=" + host + " pid=" + std::to_string(pid) +
        " job=" + std::to_string(job_));
  }

  void error(std::int64_t submitted, const std::string& what) {
    std::lock_guard lock(mu_);
    ++outcomes_;
    ++errors_;
    say("error i=" + (submitted >= 0 ? std::to_string(submitted) : std::string("?")) +
        " job=" + std::to_string(job_) + ": " + what);
  }

  std::int64_t outcomes() {
    std::lock_guard lock(mu_);
    return outcomes_;
  }
  std::int64_t errors() {
    std::lock_guard lock(mu_);
    return errors_;
  }

  std::string missing() {
    std::lock_guard lock(mu_);
    return missing_locked();
  }

  std::string hosts_line() {
    std::lock_guard lock(mu_);
    std::string s = "hosts " + std::to_string(job_) + ":";
    for (const auto& [h, c] : hosts_) s += " " + h + "=" + std::to_string(c);
    return s;
  }

  // The job's verdict line; true if the job is correct.
  std::pair<bool, std::string> verdict(double secs) {
    std::lock_guard lock(mu_);
    const bool ok = distinct_ == o_.n && errors_ == 0 && duplicates_ == 0 && wrong_ == 0 &&
                    unexpected_ == 0 && static_cast<int>(hosts_.size()) >= o_.min_hosts;
    std::ostringstream s;
    s << "job " << job_ << ": " << (ok ? "OK" : "FAILED") << " results=" << distinct_ << "/" << o_.n
      << " errors=" << errors_ << " duplicates=" << duplicates_ << " wrong=" << wrong_
      << " unexpected_hosts=" << unexpected_ << " hosts=" << hosts_.size()
      << " min_hosts=" << o_.min_hosts << " seconds=" << fmt_seconds(secs);
    if (!ok && distinct_ != o_.n) s << " missing=" << missing_locked();
    if (!ok && static_cast<int>(hosts_.size()) < o_.min_hosts)
      s << " (fewer hosts served than --min-hosts)";
    return {ok, s.str()};
  }

 private:
  void problem(const std::string& p) { say("problem: " + p); }

  std::string missing_locked() const {
    std::string s;
    std::int64_t count = 0;
    for (std::int64_t k = 0; k < o_.n; ++k) {
      if (seen_[static_cast<std::size_t>(k)] != 0) continue;
      if (++count <= 40) s += (s.empty() ? "" : ",") + std::to_string(first_ + k);
    }
    if (count > 40) s += ",...";
    return std::to_string(count) + "[" + s + "]";
  }

  const Options& o_;
  const int job_;
  const std::int64_t first_;
  std::mutex mu_;
  std::vector<int> seen_;
  std::map<std::string, std::int64_t> hosts_;
  std::int64_t outcomes_ = 0, distinct_ = 0, errors_ = 0, duplicates_ = 0, wrong_ = 0,
               unexpected_ = 0;
};

// Ends the process when the overall deadline passes, whatever the main thread is doing
// (connecting, waiting for a result, or inside ~Pool), after saying what is missing.
class Watchdog {
 public:
  Watchdog(Clock::time_point deadline, std::string label)
      : label_(std::move(label)), thread_([this, deadline] { run(deadline); }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void stage(std::string what, Tally* tally = nullptr) {
    std::lock_guard lock(mu_);
    stage_ = std::move(what);
    tally_ = tally;
  }

 private:
  void run(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    if (cv_.wait_until(lock, deadline, [this] { return done_; })) return;
    say("deadline: the client's deadline passed during " + stage_ +
        (tally_ ? "; missing " + tally_->missing() : std::string()));
    if (tally_) say(tally_->hosts_line());
    say("summary: FAILED label=" + label_ + " deadline passed during " + stage_);
    std::fflush(nullptr);
    std::_Exit(3);
  }

  std::string label_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string stage_ = "start";
  Tally* tally_ = nullptr;
  std::thread thread_;  // last: starts once the members above exist
};

// Runs rounds of short tasks until `want` distinct hosts have answered (a readiness
// barrier, so that a job is not started before the workers are there).
bool wait_for_hosts(mqpool::Pool& pool, const Options& o) {
  const auto t0 = Clock::now();
  const auto until = t0 + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(o.wait_timeout));
  std::set<std::string> hosts;
  int rounds = 0;
  while (static_cast<int>(hosts.size()) < o.wait_hosts && Clock::now() < until) {
    ++rounds;
    std::vector<mqpool::AsyncResult<WorkResult>> rs;
    for (int k = 0; k < 4 * o.wait_hosts; ++k)
      rs.push_back(pool.apply_async(cluster_test::work_remote, WorkArgs{k, 20}));
    for (std::size_t k = 0; k < rs.size(); ++k) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      try {
        const auto r = rs[k].get(std::max(left, std::chrono::milliseconds(1)));
        if (std::get<1>(r) != std::get<0>(r) * std::get<0>(r) ||
            std::get<0>(r) != static_cast<std::int64_t>(k)) {
          say("problem: wrong answer during --wait-hosts");
          return false;
        }
        hosts.insert(std::get<2>(r));
      } catch (const mqpool::TimeoutError&) {
        break;
      } catch (const mqpool::Error& e) {
        say(std::string("ready: a probe task failed: ") + e.what());
      }
    }
  }
  std::string names;
  for (const auto& h : hosts) names += (names.empty() ? "" : ",") + h;
  if (static_cast<int>(hosts.size()) < o.wait_hosts) {
    say("ready: FAILED only " + std::to_string(hosts.size()) + " of " +
        std::to_string(o.wait_hosts) + " hosts answered (" + names + ") within " +
        fmt_seconds(o.wait_timeout) + " s, " + std::to_string(rounds) + " rounds");
    return false;
  }
  say("ready: hosts " + names + " after " + fmt_seconds(seconds_since(t0)) + " s, " +
      std::to_string(rounds) + " rounds");
  return true;
}

void run_imap(mqpool::Pool& pool, const Options& o, Tally& tally) {
  std::vector<WorkArgs> inputs;
  inputs.reserve(static_cast<std::size_t>(o.n));
  for (std::int64_t k = 0; k < o.n; ++k) inputs.emplace_back(tally.first() + k, o.ms);
  auto stream = pool.imap_unordered(cluster_test::work_remote, inputs, o.chunksize);
  for (;;) {
    try {
      auto v = stream.next(std::chrono::hours(1));  // the watchdog bounds the wait
      if (!v) break;
      tally.result(*v, -1);
    } catch (const mqpool::Error& e) {
      tally.error(-1, e.what());
      if (tally.errors() > o.n) break;  // the stream keeps failing: give up
    }
  }
}

void run_apply(mqpool::Pool& pool, const Options& o, Tally& tally) {
  std::vector<mqpool::AsyncResult<WorkResult>> rs;
  rs.reserve(static_cast<std::size_t>(o.n));
  for (std::int64_t k = 0; k < o.n; ++k) {
    const std::int64_t i = tally.first() + k;
    rs.push_back(pool.apply_async(
        cluster_test::work_remote, std::tuple<WorkArgs>{WorkArgs{i, o.ms}},
        mqpool::Callbacks<WorkResult>{
            .callback = [&tally, i](const WorkResult& r) { tally.result(r, i); },
            .error_callback = [&tally, i](const mqpool::Error& e) { tally.error(i, e.what()); }}));
  }
  for (auto& r : rs) r.wait();  // callbacks run before a result becomes ready
}

[[noreturn]] void fail_now(const std::string& line, int rc) {
  say(line);
  std::fflush(nullptr);
  std::_Exit(rc);  // ~Pool would wait for tasks that may never finish
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"mqpool cluster test client: checked jobs of cluster.work tasks"};
  app.add_option("--connect", o.connect, "the broker's client endpoint")->required();
  app.add_option("-n", o.n, "tasks per job")->check(CLI::PositiveNumber);
  app.add_option("--ms", o.ms, "CPU milliseconds per task")->check(CLI::NonNegativeNumber);
  app.add_option("--jobs", o.jobs, "jobs run one after another in the same pool")
      ->check(CLI::PositiveNumber);
  app.add_flag("--hold", o.hold, "before each job (after --wait-hosts), wait for a line on stdin");
  app.add_option("--mode", o.mode, "imap (imap_unordered) or apply (apply_async)")
      ->check(CLI::IsMember({"imap", "apply"}));
  app.add_option("--chunksize", o.chunksize, "imap_unordered chunksize")
      ->check(CLI::PositiveNumber);
  app.add_option("--min-hosts", o.min_hosts, "at least this many hosts must serve each job");
  app.add_option("--expect-hosts", o.expect_hosts, "every answer must come from one of these")
      ->delimiter(',');
  app.add_option("--wait-hosts", o.wait_hosts,
                 "before each job, wait until this many hosts have answered probe tasks");
  app.add_option("--wait-timeout", o.wait_timeout, "seconds for --wait-hosts");
  app.add_option("--deadline", o.deadline, "overall seconds before giving up (exit 3)");
  app.add_option("--heartbeat-ms", o.heartbeat_ms, "PoolOptions::heartbeat_interval");
  app.add_option("--liveness", o.liveness, "PoolOptions::heartbeat_liveness");
  app.add_option("--connect-timeout-ms", o.connect_timeout_ms, "PoolOptions::connect_timeout");
  app.add_option("--reconnect-timeout-ms", o.reconnect_timeout_ms,
                 "PoolOptions::reconnect_timeout");
  app.add_option("--max-retries", o.max_retries, "PoolOptions::max_retries");
  app.add_option("--label", o.label, "name printed in the summary");
  CLI11_PARSE(app, argc, argv);

  const auto t0 = Clock::now();
  Watchdog watchdog(
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.deadline)),
      o.label);
  std::vector<std::unique_ptr<Tally>> tallies;
  bool all_ok = true;
  try {
    mqpool::PoolOptions po;
    po.connect = o.connect;
    po.max_retries = o.max_retries;
    po.heartbeat_interval = std::chrono::milliseconds(o.heartbeat_ms);
    po.heartbeat_liveness = o.liveness;
    po.connect_timeout = std::chrono::milliseconds(o.connect_timeout_ms);
    po.reconnect_timeout = std::chrono::milliseconds(o.reconnect_timeout_ms);
    watchdog.stage("connecting (the Pool constructor)");
    std::optional<mqpool::Pool> pool;
    pool.emplace(std::move(po));
    say("connected: " + o.connect + " after " + fmt_seconds(seconds_since(t0)) + " s");
    for (int job = 1; job <= o.jobs; ++job) {
      const std::string j = std::to_string(job);
      if (o.wait_hosts > 0) {
        watchdog.stage("waiting for " + std::to_string(o.wait_hosts) + " hosts before job " + j);
        if (!wait_for_hosts(*pool, o))
          fail_now("summary: FAILED label=" + o.label + " workers not ready for job " + j, 4);
      }
      if (o.hold) {
        watchdog.stage("the hold before job " + j);
        say("hold: job " + j + " ready; waiting for a line on stdin");
        std::string line;
        if (!std::getline(std::cin, line))
          fail_now("summary: FAILED label=" + o.label + " stdin closed during the hold", 1);
      }
      auto& tally = *tallies.emplace_back(std::make_unique<Tally>(o, job));
      watchdog.stage("job " + j, &tally);
      const auto tj = Clock::now();
      say("job " + j + ": started label=" + o.label + " n=" + std::to_string(o.n) + " first=" +
          std::to_string(tally.first()) + " ms=" + std::to_string(o.ms) + " mode=" + o.mode);
      if (o.mode == "imap")
        run_imap(*pool, o, tally);
      else
        run_apply(*pool, o, tally);
      const double secs = seconds_since(tj);
      say("job " + j + ": ended after " + fmt_seconds(secs) + " s, " +
          std::to_string(tally.outcomes()) + " outcomes");
      say(tally.hosts_line());
      auto [ok, line] = tally.verdict(secs);
      say(line);
      all_ok = all_ok && ok;
    }
    watchdog.stage("close() and join()");
    pool->close();
    pool->join();
    watchdog.stage("~Pool");
    pool.reset();
  } catch (const std::exception& e) {
    say(std::string("exception: ") + e.what());
    fail_now("summary: FAILED label=" + o.label + " exception: " + e.what(), 1);
  }
  say(std::string("summary: ") + (all_ok ? "OK" : "FAILED") + " label=" + o.label +
      " jobs=" + std::to_string(o.jobs) + " n=" + std::to_string(o.n) +
      " seconds=" + fmt_seconds(seconds_since(t0)));
  return all_ok ? 0 : 1;
}
