#include "status.hpp"

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <mqpool/cluster.hpp>
#include <mqpool/errors.hpp>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/curve.hpp"
#include "common/duration.hpp"
#include "common/endpoint.hpp"
#include "json.hpp"
#include "text.hpp"

namespace mqpool::cli {

namespace {

constexpr std::size_t kScreenWidth = 80;

// Formats like printf into a std::string (the numbers of a table cell).
template <class... A>
std::string format(const char* fmt, A... args) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

// n in at most `width` (>= 4) characters: all its digits when they fit, else scaled
// with k, M, G... ("12.3M", "123M").
std::string count(std::uint64_t n, std::size_t width) {
  std::string digits = std::to_string(n);
  if (digits.size() <= width) return digits;
  double x = static_cast<double>(n);
  for (const char suffix : std::string_view("kMGTPE")) {
    x /= 1000;
    if (x >= 999.5 && suffix != 'E') continue;  // would round to 1000: the next unit
    if (std::string t = format("%.1f%c", x, suffix); t.size() <= width) return t;
    return format("%.0f%c", x, suffix);
  }
  return digits;  // unreachable: the loop returns at 'E' at the latest
}

std::string rate(double per_s, std::size_t width) {
  if (!std::isfinite(per_s) || per_s < 0) return "-";
  const std::string text = format("%.1f", per_s);
  return text.size() <= width ? text : count(static_cast<std::uint64_t>(per_s), width);
}

struct Column {
  const char* title;
  std::size_t width;
  bool right;  // numbers are right-aligned
};

// One table line: each cell made printable, cut or padded to its column, one space
// between columns, no trailing spaces.
std::string row(const std::vector<Column>& cols, const std::vector<std::string>& cells) {
  std::string line;
  for (std::size_t i = 0; i < cols.size(); ++i) {
    if (i > 0) line += ' ';
    line += pad(printable(cells[i]), cols[i].width, cols[i].right);
  }
  while (line.ends_with(' ')) line.pop_back();
  return line + '\n';
}

std::string header(const std::vector<Column>& cols) {
  std::vector<std::string> titles;
  titles.reserve(cols.size());
  for (const auto& c : cols) titles.emplace_back(c.title);
  return row(cols, titles);
}

// "label     value" pairs, three to a line.
std::string summary_line(const std::vector<std::pair<const char*, std::string>>& cells) {
  std::string line;
  for (const auto& [label, value] : cells) {
    if (!line.empty()) line += "   ";
    line += pad(label, 14, false) + pad(value, 9, true);
  }
  return line + '\n';
}

// The workers sorted by host, then agent pid: the order does not jump between redraws.
std::vector<WorkerStatus> sorted(std::vector<WorkerStatus> v) {
  std::ranges::sort(v, [](const auto& a, const auto& b) {
    return std::tie(a.host, a.pid) < std::tie(b.host, b.pid);
  });
  return v;
}
std::vector<ClientStatus> sorted(std::vector<ClientStatus> v) {
  std::ranges::sort(v, [](const auto& a, const auto& b) { return a.name < b.name; });
  return v;
}

std::string broker_id(std::uint64_t id) {
  return format("%016llx", static_cast<unsigned long long>(id));
}

std::string workers_table(const BrokerStatus& s) {
  std::uint64_t busy = 0, total = 0;
  for (const auto& w : s.workers) {
    busy += w.busy;
    total += w.executors;
  }
  std::string out = "WORKERS (" + std::to_string(s.workers.size()) + " agents, " +
                    std::to_string(busy) + "/" + std::to_string(total) + " executors busy)\n";
  if (s.workers.empty()) return out + "  none connected\n";
  // 21+7+7+7+16+6+9 characters and 6 spaces: 79 columns.
  const std::vector<Column> cols{
      {"HOST", 21, false},         {"PID", 7, true}, {"BUSY", 7, true},     {"DONE", 7, true},
      {"CURRENT TASK", 16, false}, {"FOR", 6, true}, {"CONNECTED", 9, true}};
  out += header(cols);
  for (const auto& w : sorted(s.workers)) {
    const bool idle = w.current_task.empty();
    out += row(cols,
               {w.host + (w.draining ? " (stopping)" : ""), std::to_string(w.pid),
                std::to_string(w.busy) + "/" + std::to_string(w.executors), count(w.tasks_done, 7),
                idle ? "-" : w.current_task, idle ? "-" : format_duration(w.current_for_s),
                format_duration(w.connected_for_s)});
  }
  return out;
}

std::string clients_table(const BrokerStatus& s) {
  std::string out = "CLIENTS (" + std::to_string(s.clients.size()) + ")\n";
  if (s.clients.empty()) return out + "  none connected\n";
  // 44+9+10+10 characters and 3 spaces: 76 columns.
  const std::vector<Column> cols{
      {"NAME", 44, false}, {"QUEUED", 9, true}, {"IN FLIGHT", 10, true}, {"CONNECTED", 10, true}};
  out += header(cols);
  for (const auto& c : sorted(s.clients))
    out += row(cols, {c.name, count(c.queued, 9), count(c.in_flight, 10),
                      format_duration(c.connected_for_s)});
  return out;
}

std::optional<std::chrono::milliseconds> positive_timeout(const std::string& text) {
  const auto t = detail::parse_duration_option("--timeout", text);  // std::invalid_argument
  if (t.count() <= 0) return std::nullopt;
  return t;
}

// One frame of output: the table or the JSON line, ending in a newline.
std::string render(const BrokerStatus& s, const StatusOptions& o) {
  return o.json ? status_json(s) + '\n' : status_table(s, o.connect);
}

// Blocks SIGINT and SIGTERM for the rest of the process (threads started later, like
// ZeroMQ's, inherit the mask): they are then taken by sigtimedwait() in watch().
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  return set;
}

// Waits until `until`; true if SIGINT or SIGTERM arrived first.
bool stop_signal_before(const sigset_t& set, std::chrono::steady_clock::time_point until) {
  while (true) {
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return false;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    const timespec ts{static_cast<std::time_t>(ns / 1'000'000'000),
                      static_cast<long>(ns % 1'000'000'000)};
    if (sigtimedwait(&set, nullptr, &ts) >= 0) return true;
    if (errno != EAGAIN && errno != EINTR) return false;
  }
}

// --watch: a frame every second until SIGINT/SIGTERM. A terminal is cleared before each
// table; a pipe or file gets one frame after another.
int watch(const StatusOptions& o, std::chrono::milliseconds timeout) {
  const sigset_t stop = block_stop_signals();
  const bool clear = !o.json && ::isatty(STDOUT_FILENO) == 1;
  bool answered = false;
  while (true) {
    const auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    std::string frame;
    try {
      frame = render(broker_status(o.connect, timeout, o.keys.curve_secret, o.keys.broker_key), o);
      answered = true;
    } catch (const Error& e) {
      const std::string line = std::string("mqpool status: ") + e.what();
      if (!answered) {
        std::cerr << line << '\n';
        return 1;
      }
      // It answered before, so it may be restarting: keep asking, and say so meanwhile
      // (on the screen in place of the table; JSON lines stay JSON).
      if (o.json)
        std::cerr << line << " (retrying)\n";
      else
        frame = line + " (retrying)\n";
    }
    if (clear)
      frame.insert(0, "\x1b[H\x1b[2J");  // cursor home, clear the screen
    else if (!o.json && !frame.empty())
      frame += '\n';  // a blank line between tables in a log
    std::cout << frame << std::flush;
    if (stop_signal_before(stop, next)) return 0;
  }
}

}  // namespace

void add_status_options(CLI::App& sub, StatusOptions& o) {
  sub.add_option("--connect", o.connect, "the broker's client endpoint (tcp://HOST:5555)")
      ->required();
  sub.add_flag("--json", o.json,
               "print one JSON object per line instead of a table (docs/STATUS.md)");
  sub.add_flag("--watch", o.watch, "redraw every second until SIGINT/SIGTERM");
  sub.add_option("--timeout", o.timeout,
                 "how long to wait for the broker's answer (500ms, 5s, ...)")
      ->capture_default_str();
  add_key_options(sub, o.keys);
}

int run_status(const StatusOptions& o) {
  std::chrono::milliseconds timeout;
  try {
    detail::check_endpoint("--connect", o.connect, detail::EndpointUse::connect);
    const auto t = positive_timeout(o.timeout);
    if (!t) throw std::invalid_argument("--timeout " + o.timeout + ": must be more than 0");
    timeout = *t;
    detail::load_curve_client(o.keys.curve_secret, o.keys.broker_key, "--curve-secret",
                              "--broker-key");
  } catch (const std::invalid_argument& e) {
    std::cerr << "mqpool status: " << e.what() << '\n';
    return 1;
  }
  if (o.watch) return watch(o, timeout);
  try {
    std::cout << render(broker_status(o.connect, timeout, o.keys.curve_secret, o.keys.broker_key),
                        o)
              << std::flush;
  } catch (const Error& e) {
    std::cerr << "mqpool status: " << e.what() << '\n';
    return 1;
  }
  return 0;
}

std::string status_json(const BrokerStatus& s) {
  JsonWriter j;
  j.begin_object();
  j.key("broker").value(broker_id(s.broker));
  j.key("uptime_s").value(s.uptime_s);
  j.key("workers").begin_array();
  for (const auto& w : s.workers) {
    j.begin_object();
    j.key("host").value(w.host);
    j.key("pid").value(std::uint64_t{w.pid});
    j.key("executors").value(std::uint64_t{w.executors});
    j.key("busy").value(std::uint64_t{w.busy});
    j.key("tasks_done").value(w.tasks_done);
    j.key("current_task").value(w.current_task);
    j.key("current_for_s").value(w.current_for_s);
    j.key("connected_for_s").value(w.connected_for_s);
    j.key("draining").value(w.draining);
    j.end_object();
  }
  j.end_array();
  j.key("clients").begin_array();
  for (const auto& c : s.clients) {
    j.begin_object();
    j.key("name").value(c.name);
    j.key("queued").value(c.queued);
    j.key("in_flight").value(c.in_flight);
    j.key("connected_for_s").value(c.connected_for_s);
    j.end_object();
  }
  j.end_array();
  j.key("queued").value(s.queued);
  j.key("in_flight").value(s.in_flight);
  j.key("done").value(s.done);
  j.key("failed").value(s.failed);
  j.key("retried").value(s.retried);
  j.key("malformed").value(s.malformed);
  j.key("duplicates").value(s.duplicates);
  j.key("tasks_per_s").value(s.tasks_per_s);
  j.end_object();
  return j.str();
}

std::string status_table(const BrokerStatus& s, const std::string& endpoint) {
  std::string out = cut(printable("broker " + broker_id(s.broker) + " at " + endpoint + ", up " +
                                  format_duration(s.uptime_s)),
                        kScreenWidth) +
                    '\n';
  out += summary_line({{"queued", count(s.queued, 9)},
                       {"in flight", count(s.in_flight, 9)},
                       {"tasks/s (10s)", rate(s.tasks_per_s, 9)}});
  out += summary_line({{"done", count(s.done, 9)},
                       {"failed", count(s.failed, 9)},
                       {"retried", count(s.retried, 9)}});
  out +=
      summary_line({{"malformed", count(s.malformed, 9)}, {"duplicates", count(s.duplicates, 9)}});
  out += '\n' + workers_table(s) + '\n' + clients_table(s);
  return out;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  if (seconds < 10) return format("%.1fs", std::floor(seconds * 10) / 10);
  const auto t = static_cast<std::uint64_t>(seconds);
  const auto u = [](std::uint64_t n) { return static_cast<unsigned long long>(n); };
  if (t < 60) return format("%llus", u(t));
  if (t < 3600) return format("%llum%02llus", u(t / 60), u(t % 60));
  if (t < 86400) return format("%lluh%02llum", u(t / 3600), u(t % 3600 / 60));
  return format("%llud%02lluh", u(t / 86400), u(t % 86400 / 3600));
}

}  // namespace mqpool::cli
