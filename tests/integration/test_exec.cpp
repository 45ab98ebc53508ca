// The built-in task "mqpool.exec" that every worker has (docs/API.md, "Worker programs").
#include <gtest/gtest.h>

#include <mqpool/mqpool.hpp>

#include "helpers.hpp"

namespace itest {
namespace {

using Argv = std::vector<std::string>;

TEST(Exec, ReturnsExitCodeOutputAndErrorOfTheCommand) {
  mqpool::Pool pool(2);
  auto r = pool.apply_async(mqpool::exec_task, Argv{"sh", "-c", "echo out; echo err >&2; exit 3"});
  const auto [code, out, err] = r.get(kLong);
  EXPECT_EQ(code, 3);
  EXPECT_EQ(out, "out\n");
  EXPECT_EQ(err, "err\n");
}

TEST(Exec, LargeOutputOnBothStreamsDoesNotDeadlock) {
  mqpool::Pool pool(1);
  // 1 MiB on each stream: more than a pipe holds, so both must be read as they fill.
  auto r = pool.apply_async(
      mqpool::exec_task,
      Argv{"sh", "-c", "head -c 1048576 /dev/zero; head -c 1048576 /dev/zero >&2"});
  const auto [code, out, err] = r.get(kLong);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out.size(), 1048576u);
  EXPECT_EQ(err.size(), 1048576u);
}

TEST(Exec, ACommandThatCannotStartGives127AndSaysWhy) {
  mqpool::Pool pool(1);
  const auto [code, out, err] =
      pool.apply_async(mqpool::exec_task, Argv{"/nonexistent/cmd"}).get(kLong);
  EXPECT_EQ(code, 127);
  EXPECT_NE(err.find("/nonexistent/cmd"), std::string::npos) << err;
}

TEST(Exec, AKilledCommandGives128PlusTheSignal) {
  mqpool::Pool pool(1);
  const auto [code, out, err] =
      pool.apply_async(mqpool::exec_task, Argv{"sh", "-c", "kill -9 $$"}).get(kLong);
  EXPECT_EQ(code, 128 + 9);
}

TEST(Exec, AnEmptyCommandLineIsATaskError) {
  mqpool::Pool pool(1);
  EXPECT_THROW(pool.apply_async(mqpool::exec_task, Argv{}).get(kLong), mqpool::TaskError);
}

}  // namespace
}  // namespace itest
