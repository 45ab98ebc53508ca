#include "joblog.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace mqpool::cli {

namespace {

constexpr const char* kHeader =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("--joblog " + path + ": " + what + ": " + std::strerror(errno));
}

// A row stays one line whatever the command holds.
std::string one_line(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out;
}

// Drops a last line without its newline: the row a killed run was writing.
void drop_cut_row(int fd, const std::string& path) {
  struct stat st {};
  if (fstat(fd, &st) != 0) fail(path, "stat");
  off_t end = st.st_size;
  char c = '\n';
  while (end > 0) {
    if (pread(fd, &c, 1, end - 1) != 1) fail(path, "read");
    if (c == '\n') break;
    --end;
  }
  if (end != st.st_size && ftruncate(fd, end) != 0) fail(path, "truncate");
}

}  // namespace

JobLog::JobLog(const std::string& path, bool resume) : path_(path) {
  // Read access for --resume: drop_cut_row reads the end back.
  const int flags = O_CREAT | O_CLOEXEC | O_APPEND | (resume ? O_RDWR : O_WRONLY | O_TRUNC);
  fd_ = ::open(path.c_str(), flags, 0644);
  if (fd_ < 0) fail(path, "cannot open");
  if (resume) drop_cut_row(fd_, path);
  struct stat st {};
  if (fstat(fd_, &st) != 0) fail(path, "stat");
  if (st.st_size == 0 && ::write(fd_, kHeader, std::strlen(kHeader)) < 0) fail(path, "write");
}

JobLog::~JobLog() {
  if (fd_ >= 0) ::close(fd_);
}

void JobLog::write(const JobRow& r) {
  char nums[160];
  std::snprintf(nums, sizeof nums, "\t%.3f\t%10.3f\t%llu\t%llu\t%d\t%d\t", r.start, r.runtime,
                static_cast<unsigned long long>(r.send), static_cast<unsigned long long>(r.receive),
                r.exit_code, r.signal);
  const std::string row = std::to_string(r.seq) + '\t' + one_line(r.host.empty() ? ":" : r.host) +
                          nums + one_line(r.command) + '\n';
  if (::write(fd_, row.data(), row.size()) != static_cast<ssize_t>(row.size()))
    fail(path_, "write");
}

std::set<std::uint64_t> JobLog::finished(const std::string& path) {
  std::set<std::uint64_t> seqs;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return seqs;
    fail(path, "cannot read");
  }
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    if (first && line.rfind("Seq\t", 0) == 0) {
      first = false;
      continue;
    }
    first = false;
    if (in.eof()) break;  // no newline: a row cut short, not a finished job
    std::uint64_t seq = 0;
    const auto tab = line.find('\t');
    const auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), seq);
    if (ec != std::errc() || tab == std::string::npos || p != line.data() + tab) {
      errno = 0;
      throw std::runtime_error("--joblog " + path +
                               ": not a joblog (a row that does not start "
                               "with a job number: '" +
                               line.substr(0, 60) + "')");
    }
    seqs.insert(seq);
  }
  return seqs;
}

}  // namespace mqpool::cli
