// The built-in task mqpool.exec_job closes each file descriptor it opened exactly once.
// An executor has other threads (its heartbeat, ZeroMQ's I/O thread) that open files
// too, so a second close() of a number it had already closed could close one of theirs.
// This executable interposes close() for the whole process (its definition wins over
// libc's for the library's calls too) and counts closes of numbers that were not open.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <tuple>
#include <vector>

#include "mqpool/registry.hpp"

namespace {
std::atomic<bool> g_watching{false};
std::atomic<int> g_closes_of_closed{0};
}  // namespace

extern "C" int close(int fd) {
  if (g_watching.load() && fcntl(fd, F_GETFD) < 0 && errno == EBADF) ++g_closes_of_closed;
  return static_cast<int>(syscall(SYS_close, fd));
}

namespace {

using mqpool::detail::ChunkOutput;
using mqpool::detail::Reader;

// Runs one mqpool.exec_job task in this process, as an executor's run_chunk does.
ChunkOutput exec_job(std::vector<std::string> argv, const std::string& input) {
  mqpool::detail::Buffer buf;
  mqpool::detail::Packer(buf).pack(std::make_tuple(argv, input, std::uint64_t{0}));
  const auto* entry = mqpool::detail::Registry::instance().find("mqpool.exec_job");
  if (entry == nullptr) throw std::runtime_error("mqpool.exec_job is not registered");
  Reader reader(buf.data(), buf.size());
  ChunkOutput out;
  entry->run(reader, 1, out, "mqpool.exec_job");
  return out;
}

TEST(ExecFds, EachPipeEndIsClosedOnceWithOrWithoutInput) {
  for (const std::string& input : {std::string{}, std::string("some input\n")}) {
    g_closes_of_closed = 0;
    g_watching = true;
    const ChunkOutput out = exec_job({"sh", "-c", "cat; echo err >&2"}, input);
    g_watching = false;
    EXPECT_TRUE(out.errors.empty()) << "the job itself failed";
    EXPECT_EQ(g_closes_of_closed.load(), 0)
        << "close() was called on a descriptor already closed (input: '" << input << "')";
  }
}

}  // namespace
