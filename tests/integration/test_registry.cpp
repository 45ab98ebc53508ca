// Start-up checks of the task registry, run in a separate program (duplicate_main.cpp).
#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "helpers.hpp"

#ifndef MQPOOL_ITEST_DUPLICATE_PROGRAM
#error "MQPOOL_ITEST_DUPLICATE_PROGRAM must name the duplicate-task program"
#endif

namespace itest {
namespace {

TEST(Registry, DuplicateNameIsAnErrorAtStartup) {
  // `timeout` bounds the run: a program that hangs fails the test instead of the suite.
  const std::string cmd =
      std::string("timeout -s KILL 60 '") + MQPOOL_ITEST_DUPLICATE_PROGRAM + "' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) output.append(buf, n);
  const int status = ::pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status) || WIFSIGNALED(status));
  const bool killed_by_timeout = (WIFEXITED(status) && WEXITSTATUS(status) == 137) ||
                                 (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_FALSE(killed_by_timeout) << "the program hung; output:\n" << output;
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "a duplicate task name did not stop the program; output:\n"
      << output;
  EXPECT_NE(output.find("itest.duplicate"), std::string::npos)
      << "the message does not name the duplicate; output:\n"
      << output;
}

}  // namespace
}  // namespace itest
