// `mqpool run --joblog FILE`: one tab-separated row per finished job, in GNU parallel's
// columns, and the set of jobs a log already holds (for --resume).
#pragma once

#include <cstdint>
#include <set>
#include <string>

namespace mqpool::cli {

struct JobRow {
  std::uint64_t seq = 0;                // {#}: the job's place in the input, from 1
  std::string host;                     // where it ran ("" if it never ran: its worker was lost)
  double start = 0;                     // Unix time in seconds
  double runtime = 0;                   // seconds
  std::uint64_t send = 0, receive = 0;  // bytes to its stdin, from its stdout and stderr
  int exit_code = 0;                    // -1 when it did not end by itself (killed, lost)
  int signal = 0;
  std::string command;  // shell_line() of its argv
};

class JobLog {
 public:
  // Opens `path`: with `resume`, to append after the rows there (a row cut short by a
  // crash is dropped first); else truncated, with the header line written. Throws
  // std::runtime_error naming the file and the reason.
  JobLog(const std::string& path, bool resume);
  ~JobLog();
  JobLog(const JobLog&) = delete;
  JobLog& operator=(const JobLog&) = delete;

  // Writes one row with a single write(2), so that a run killed at any moment leaves
  // only whole rows. Throws std::runtime_error on a write error.
  void write(const JobRow& row);

  // The seq of every row of the log at `path` (none when it does not exist), for
  // --resume: those jobs ran to an end and are not run again. Throws
  // std::runtime_error when it cannot be read or is not a joblog.
  static std::set<std::uint64_t> finished(const std::string& path);

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace mqpool::cli
