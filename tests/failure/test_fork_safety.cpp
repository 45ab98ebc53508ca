// Fork in a threaded program (issue 11, item 6; docs/API.md "Local pools"): a Pool made while
// other threads of the program log with spdlog and allocate still starts workers that
// run tasks, and those tasks can log with spdlog too. Before the fix, a child forked
// while another thread held spdlog's console mutex inherited it locked, and the task's
// first log line deadlocked.
#include <sys/wait.h>

#include "common.hpp"
#include "tests/sanitizers.hpp"

namespace ftest {
namespace {

// The last `n` lines of `path`, one per line, for a failure message.
std::string tail(const std::string& path, std::size_t n = 5) {
  const auto lines = read_lines(path);
  std::string out;
  for (std::size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += "\n  " + lines[i];
  return out;
}

// Not under AddressSanitizer: there a forked child hung in round 4 of 200 (in CI, once in
// three runs). The likeliest cause is ASan's own allocator, whose locks clang 16 does not
// take around fork(): a child forked while another thread allocates inherits one held.
// The locks this test is about are mqpool's and spdlog's; the GCC build runs it.
TEST(ForkSafety, PoolsStartWhileOtherThreadsLogAndAllocate) {
  MQPOOL_SKIP_UNDER_ASAN("its allocator is not fork-safe under threads that allocate");
  TempDir dir;
  // main.cpp's scenario: 200 rounds. Its stdout (the threads' log lines) is discarded;
  // its stderr (one line per round, and anything our logger says) goes to a file.
  const std::string log = dir.file("stderr");
  Scenario scenario("fork_under_threads", dir.path(), {}, log, "/dev/null");
  ASSERT_GT(scenario.pid(), 0);
  const auto status = scenario.wait_for(std::chrono::seconds(120));
  scenario.kill_group();  // agents or executors a failed round left behind
  ASSERT_TRUE(status.has_value()) << "the scenario did not finish its 200 rounds within 120 s"
                                  << " (a child deadlocked?); its last lines:" << tail(log);
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << "the scenario ended with wait status " << *status << "; its last lines:" << tail(log);
}

}  // namespace
}  // namespace ftest
