#include "run.hpp"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <mqpool/cluster.hpp>
#include <mqpool/mqpool.hpp>
#include <mqpool/worker.hpp>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/duration.hpp"
#include "common/host.hpp"
#include "common/size.hpp"
#include "joblog.hpp"
#include "progress.hpp"
#include "run_command.hpp"

namespace mqpool::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxFailedExit = 101;

std::atomic<int> g_signal{0};  // the SIGINT or SIGTERM that asks the run to stop
void on_stop_signal(int sig) { g_signal.store(sig); }

// --halt: after `fails` failed jobs, stop: `now` kills the running jobs, `soon` lets them
// finish; no new job starts either way.
struct Halt {
  enum class When { never, soon, now } when = When::never;
  std::uint64_t fails = 0;
};

Halt parse_halt(std::string_view text) {
  Halt h;
  if (text == "never") return h;
  const auto comma = text.find(',');
  const auto when = text.substr(0, comma);
  const auto rest = comma == std::string_view::npos ? "" : text.substr(comma + 1);
  std::uint64_t n = 0;
  const bool num_ok = rest.starts_with("fail=") &&
                      std::from_chars(rest.data() + 5, rest.data() + rest.size(), n).ptr ==
                          rest.data() + rest.size() &&
                      rest.size() > 5 && n > 0;
  if ((when != "now" && when != "soon") || !num_ok)
    throw std::invalid_argument("--halt '" + std::string(text) +
                                "' is not never, now,fail=N or soon,fail=N (N >= 1)");
  h.when = when == "now" ? Halt::When::now : Halt::When::soon;
  h.fails = n;
  return h;
}

// The items, read one at a time as jobs are started, so that an endless input works.
class Input {
 public:
  Input(const std::string& path, char delim) : delim_(delim) {
    file_ = path.empty() ? stdin : std::fopen(path.c_str(), "re");
    if (file_ == nullptr)
      throw std::invalid_argument("--arg-file " + path + ": " + std::strerror(errno));
  }
  ~Input() {
    if (file_ != stdin) std::fclose(file_);
    std::free(buf_);
  }
  Input(const Input&) = delete;
  Input& operator=(const Input&) = delete;

  // The next item, without its delimiter; nullopt at the end.
  std::optional<std::string> next() {
    if (done_) return std::nullopt;
    const ssize_t n = ::getdelim(&buf_, &cap_, delim_, file_);
    if (n < 0) {
      done_ = true;
      // EINTR: SIGINT or SIGTERM stops the run, which the caller sees.
      if (std::ferror(file_) && errno != EINTR)
        throw std::runtime_error(std::string("reading the input: ") + std::strerror(errno));
      return std::nullopt;
    }
    std::size_t len = static_cast<std::size_t>(n);
    if (len > 0 && buf_[len - 1] == delim_) --len;
    return std::string(buf_, len);
  }
  bool done() const { return done_; }

 private:
  std::FILE* file_ = nullptr;
  char delim_;
  char* buf_ = nullptr;
  std::size_t cap_ = 0;
  bool done_ = false;
};

struct Job {
  std::uint64_t seq = 0;
  std::string item;
  std::vector<std::string> argv;
  int runs = 0;  // how many times it was started
};

// What came back for one job: the command's result, or why the pool gave none.
struct Outcome {
  std::uint64_t seq = 0;
  std::optional<ExecJobResult> result;
  std::string error;  // when no result: the pool's message
  bool timed_out = false;
  bool stopped = false;  // PoolStateError: the run itself is stopping
};

// A job at its end, as it is printed and logged.
struct Finished {
  Job job;
  bool failed = false;
  std::string why;  // for a failure: "exited 3", "timed out", ...
  std::string out, err;
  JobRow row;
};

std::string describe_failure(const Outcome& o) {
  if (o.timed_out) return "ran past --timeout and was killed";
  if (!o.result) return o.error;
  const auto code = std::get<0>(*o.result), sig = std::get<1>(*o.result);
  if (sig != 0) return "was killed by signal " + std::to_string(sig);
  return "exited " + std::to_string(code);
}

// Every line of `text` with `prefix` before it (a last line without newline gets one).
std::string prefixed(const std::string& prefix, const std::string& text) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    auto nl = text.find('\n', i);
    if (nl == std::string::npos) nl = text.size();
    out.append(prefix).append(text, i, nl - i).append("\n");
    i = nl + 1;
  }
  return out;
}

}  // namespace

// The run: reads items, keeps `window_` jobs in the pool, and prints, logs and counts
// each one as it ends (docs/RUN.md, "How a run flows").
class Runner {
 public:
  Runner(const RunOptions& o, Halt halt, PoolOptions pool_options, std::set<std::uint64_t> skip)
      : opts_(o),
        halt_(halt),
        skip_(std::move(skip)),
        input_(o.arg_file, o.null ? '\0' : '\n'),
        max_output_(detail::parse_size_option("--max-output", o.max_output)),
        bar_(o.bar || (!o.no_bar && ::isatty(STDERR_FILENO))),
        pool_(std::move(pool_options)) {
    // Twice the executors keeps each one fed while results travel back. With --halt soon
    // no job waits in the pool, so that none starts after the halt.
    const std::size_t n = executors(o);
    window_ = halt.when == Halt::When::soon ? n : 2 * n + 2;
    if (!o.joblog.empty()) log_.emplace(o.joblog, o.resume);
  }

  int run();

 private:
  static std::size_t executors(const RunOptions& o);
  bool starting() const { return !halted_ && !input_.done(); }
  void fill();
  void submit(Job job);
  bool wait_outcomes(std::deque<Outcome>& got);
  void settle(Outcome o);
  void finish(Finished f);
  void print(const Finished& f);
  void flush_ordered(bool all);
  void stop(bool kill);
  int summary(Clock::time_point t0);

  const RunOptions& opts_;
  Halt halt_;
  std::set<std::uint64_t> skip_;
  Input input_;
  std::uint64_t max_output_;
  Progress bar_;
  std::optional<JobLog> log_;
  std::size_t window_ = 4;
  std::uint64_t next_seq_ = 1;  // {#} of the next input item
  std::uint64_t jobs_ = 0;      // items started (not skipped by --resume)
  bool halted_ = false;         // by --halt or a signal: no job starts again, not even a retry
  std::unordered_map<std::uint64_t, Job> running_;
  std::deque<std::uint64_t> order_;          // seqs not yet printed, in input order
  std::map<std::uint64_t, Finished> ready_;  // finished, waiting for their turn
  std::uint64_t done_ = 0, failed_ = 0, retried_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Outcome> outcomes_;  // under mu_: filled by the pool's delivery thread

  Pool pool_;  // last: destroyed first, so no callback outlives the members above
};

std::size_t Runner::executors(const RunOptions& o) {
  if (o.connect.empty())
    return static_cast<std::size_t>(o.processes > 0 ? o.processes : detail::default_processes());
  std::size_t n = 0;
  for (const auto& w :
       broker_status(o.connect, std::chrono::seconds(10), o.keys.curve_secret, o.keys.broker_key)
           .workers)
    n += w.executors;
  return n > 0 ? n : 1;
}

void Runner::submit(Job job) {
  ++job.runs;
  const auto seq = job.seq;
  auto deliver = [this](Outcome o) {
    {
      std::lock_guard lock(mu_);
      outcomes_.push_back(std::move(o));
    }
    cv_.notify_one();
  };
  Callbacks<ExecJobResult> cb;
  cb.callback = [deliver, seq](const ExecJobResult& r) {
    deliver(Outcome{seq, r, {}, false, false});
  };
  cb.error_callback = [deliver, seq](const Error& e) {
    deliver(Outcome{seq, std::nullopt, e.what(), dynamic_cast<const TimeoutError*>(&e) != nullptr,
                    dynamic_cast<const PoolStateError*>(&e) != nullptr});
  };
  pool_.apply_async(exec_job_task, std::tuple{job.argv, std::string{}, max_output_}, std::move(cb));
  running_.insert_or_assign(seq, std::move(job));
}

// Starts jobs while there is room in the window and input to read.
void Runner::fill() {
  while (starting() && running_.size() < window_) {
    auto item = input_.next();
    if (!item) {
      bar_.set_total(jobs_);
      break;
    }
    const auto seq = next_seq_++;
    if (skip_.count(seq) != 0) continue;
    Job job{seq, std::move(*item), {}, 0};
    job.argv = expand_command(opts_.command, job.item, seq);
    if (!opts_.unordered) order_.push_back(seq);
    ++jobs_;
    submit(std::move(job));
  }
}

// Waits (at most 100 ms, so that a signal and the bar are seen) for outcomes.
bool Runner::wait_outcomes(std::deque<Outcome>& got) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return !outcomes_.empty(); });
  got.swap(outcomes_);
  return !got.empty();
}

void Runner::settle(Outcome o) {
  auto it = running_.find(o.seq);
  if (it == running_.end()) return;
  if (o.stopped || g_signal.load() != 0) {
    running_.erase(it);  // ended by the run's own stop: not a result, not logged
    return;
  }
  const bool failed = !o.result || std::get<0>(*o.result) != 0;
  if (failed && !o.timed_out && o.result && it->second.runs <= opts_.retries && !halted_) {
    ++retried_;
    Job again = std::move(it->second);
    running_.erase(it);
    submit(std::move(again));
    return;
  }
  Finished f{std::move(it->second), failed, failed ? describe_failure(o) : "", {}, {}, {}};
  running_.erase(it);
  // Without a result it did not end by itself: exit -1 (and SIGKILL after a timeout).
  f.row = JobRow{f.job.seq, "", 0, 0, 0, 0, -1, o.timed_out ? SIGKILL : 0, shell_line(f.job.argv)};
  if (o.result) {
    auto& [code, sig, out, err, host, start, runtime] = *o.result;
    f.row.host = std::move(host);
    f.row.start = start;
    f.row.runtime = runtime;
    f.row.receive = out.size() + err.size();
    f.row.exit_code = code;
    f.row.signal = sig;
    f.out = std::move(out);
    f.err = std::move(err);
  }
  finish(std::move(f));
}

void Runner::finish(Finished f) {
  ++done_;
  if (f.failed) ++failed_;
  if (log_) log_->write(f.row);
  bar_.update(done_, failed_);
  const bool failed = f.failed;
  if (opts_.unordered) {
    print(f);
  } else {
    ready_.insert_or_assign(f.job.seq, std::move(f));
    flush_ordered(false);
  }
  if (failed && halt_.when != Halt::When::never && failed_ >= halt_.fails) {
    std::fprintf(stderr, "mqpool run: halting after %llu failed jobs (--halt %s)\n",
                 static_cast<unsigned long long>(failed_), opts_.halt.c_str());
    stop(halt_.when == Halt::When::now);
  }
}

// Prints the outputs that are next in input order; with `all`, every finished one.
void Runner::flush_ordered(bool all) {
  while (!order_.empty()) {
    auto it = ready_.find(order_.front());
    if (it != ready_.end()) {
      print(it->second);
      ready_.erase(it);
    } else if (!all) {
      break;
    }
    order_.pop_front();
  }
}

// A job's standard output whole; its standard error, prefixed by its input if it failed.
void Runner::print(const Finished& f) {
  bar_.clear();
  std::fwrite(f.out.data(), 1, f.out.size(), stdout);
  std::fflush(stdout);
  if (!f.failed) {
    std::fwrite(f.err.data(), 1, f.err.size(), stderr);
  } else {
    const std::string who = f.job.item + ": ";
    const std::string text = prefixed(who, f.err) + "mqpool run: job " + std::to_string(f.job.seq) +
                             " (" + f.job.item + ") " + f.why + "\n";
    std::fwrite(text.data(), 1, text.size(), stderr);
  }
  bar_.redraw();
}

// No job starts from here on; `kill`: the running ones are killed too.
void Runner::stop(bool kill) {
  halted_ = true;
  bar_.set_total(done_ + running_.size());
  if (!kill) return;
  pool_.terminate();  // error callbacks with PoolStateError: settle() drops them
  running_.clear();
}

int Runner::run() {
  const auto t0 = Clock::now();
  std::deque<Outcome> got;
  fill();
  while (!running_.empty()) {
    if (g_signal.load() != 0) {
      stop(true);
      break;
    }
    if (wait_outcomes(got)) {
      for (auto& o : got) settle(std::move(o));
      got.clear();
      fill();
    }
    bar_.tick();
  }
  flush_ordered(true);  // after a stop: what finished is printed, as it is logged
  return summary(t0);
}

int Runner::summary(Clock::time_point t0) {
  bar_.finish();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const int sig = g_signal.load();
  std::fprintf(stderr, "mqpool run: %s%llu jobs done, %llu failed, %llu retried, %.2f s\n",
               sig != 0 ? "interrupted: " : "", static_cast<unsigned long long>(done_),
               static_cast<unsigned long long>(failed_), static_cast<unsigned long long>(retried_),
               wall);
  if (sig != 0) return 128 + sig;
  return static_cast<int>(std::min<std::uint64_t>(failed_, kMaxFailedExit));
}

namespace {

int dry_run(const RunOptions& o, const std::set<std::uint64_t>& skip) {
  Input input(o.arg_file, o.null ? '\0' : '\n');
  std::uint64_t seq = 0;
  while (true) {
    const auto item = input.next();
    if (!item) return 0;
    if (skip.count(++seq) == 0)
      std::cout << shell_line(expand_command(o.command, *item, seq)) << '\n';
  }
}

PoolOptions pool_options(const RunOptions& o) {
  if (o.processes < 0) throw std::invalid_argument("--processes must be >= 0");
  if (o.retries < 0) throw std::invalid_argument("--retries must be >= 0");
  PoolOptions p;
  p.processes = o.processes;
  p.connect = o.connect;
  p.curve_secret_file = o.keys.curve_secret;
  p.broker_key_file = o.keys.broker_key;
  if (!o.timeout.empty()) p.task_timeout = detail::parse_duration_option("--timeout", o.timeout);
  p.max_message = detail::parse_max_message_option("--max-message", o.max_message);
  return p;
}

}  // namespace

int run_jobs(const RunOptions& o) {
  try {
    if (o.command.empty()) throw std::invalid_argument("no command: give one after --");
    if (!o.command_after_dashes && o.command.front().starts_with("-"))
      throw std::invalid_argument("unknown option " + o.command.front() +
                                  " (a command that starts with '-' goes after --)");
    if (o.resume && o.joblog.empty()) throw std::invalid_argument("--resume needs --joblog FILE");
    const Halt halt = parse_halt(o.halt);
    auto skip = o.resume ? JobLog::finished(o.joblog) : std::set<std::uint64_t>{};
    if (o.dry_run) return dry_run(o, skip);
    Runner runner(o, halt, pool_options(o), std::move(skip));
    // After the pool started its processes: they keep the default action.
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    return runner.run();
  } catch (const std::exception& e) {
    std::cerr << "mqpool run: " << e.what() << '\n';
    return kRunSetupError;
  }
}

void add_run_options(CLI::App& sub, RunOptions& o) {
  sub.add_option("--connect", o.connect, "a broker's client endpoint (default: a local pool)");
  add_key_options(sub, o.keys);
  sub.add_option("--processes", o.processes, "local worker processes [cores]");
  sub.add_option("--timeout", o.timeout, "per job: kill a job that runs longer (30s, 2m)");
  sub.add_option("--retries", o.retries, "run a job that exits non-zero again, up to N times [0]");
  sub.add_option("--halt", o.halt,
                 "stop after N failed jobs: now,fail=N kills the running ones, soon,fail=N "
                 "lets them finish [never]");
  sub.add_option("--joblog", o.joblog, "write one row per finished job to FILE (GNU parallel's)");
  sub.add_flag("--resume", o.resume, "with --joblog: skip the jobs the log already holds");
  sub.add_flag("--dry-run", o.dry_run, "print the commands instead of running them");
  sub.add_flag("--unordered", o.unordered, "print outputs as jobs finish, not in input order");
  sub.add_flag("-0,--null", o.null, "input items end with NUL, not newline");
  sub.add_option("-a,--arg-file", o.arg_file, "read the input items from FILE, not stdin");
  sub.add_option("--max-output", o.max_output, "keep at most SIZE of each job's stdout and stderr")
      ->capture_default_str();
  sub.add_option("--max-message", o.max_message,
                 "with --connect: the largest frame taken from the broker (64K to 1T)")
      ->capture_default_str();
  auto* bar = sub.add_flag("--bar", o.bar, "show the progress bar (default: when stderr is a tty)");
  sub.add_flag("--no-bar", o.no_bar, "never show the progress bar")->excludes(bar);
  // Everything from the first word that is not one of the options above is the command,
  // untouched (CLI11 would read "[a,b]" as a list): `mqpool run gzip -9 {}` works, and so
  // does `mqpool run -- gzip -9 {}`. run_jobs() takes it from sub.remaining().
  sub.prefix_command();
  sub.footer(
      "COMMAND runs once per input item, without a shell. In its words: {} the item, {.} "
      "without its extension, {/} its basename, {//} its dirname, {/.} the basename without "
      "extension, {#} the job's number; with none of them the item is appended. "
      "docs/RUN.md has the whole reference.");
}

}  // namespace mqpool::cli
