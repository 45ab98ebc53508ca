// The built-in tasks "mqpool.exec" and "mqpool.exec_job" that every worker has
// (docs/API.md §10).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mqpool/mqpool.hpp>
#include <mqpool/worker.hpp>
#include <random>

#include "helpers.hpp"

namespace itest {
namespace {

using Argv = std::vector<std::string>;

// `n` bytes of every value, in an order no simple generator repeats.
std::string random_bytes(std::size_t n) {
  std::mt19937 gen(12345);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(gen());
  return s;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

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

TEST(Exec, AnEmptyStandardInputEndsAtOnce) {
  mqpool::Pool pool(1);
  // cat ends only at EOF: an inherited terminal or pipe would keep it waiting.
  const auto [code, out, err] = bounded(kLong, "mqpool.exec of cat",
                                        [&] { return pool.apply(mqpool::exec_task, Argv{"cat"}); });
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "");
}

TEST(Exec, EachOutputIsCutAt64MiBWithANote) {
  mqpool::Pool pool(1);
  const auto [code, out, err] =
      pool.apply_async(mqpool::exec_task, Argv{"head", "-c", "67108865", "/dev/zero"}).get(kLong);
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out.size(), std::size_t{64} << 20);
  EXPECT_EQ(err, "mqpool: standard output cut at 67108864 bytes (67108865 bytes in all)\n");
}

// An executable file of `text` at `path`.
void write_command(const std::string& path, const std::string& text) {
  write_file_atomically(path, text);
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
}

// An executor remembers where in PATH it found a command (exec_task.cpp, CommandPaths),
// and still runs what execvp would: the command found again once its file is gone, the
// same name anew when PATH changes, a file without "#!" through sh.
TEST(Exec, ACommandFoundInPathIsFoundAgainWhenItMoves) {
  TempDir dir;
  const std::string a = dir.file("a"), b = dir.file("b");
  std::filesystem::create_directory(a);
  std::filesystem::create_directory(b);
  const std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", (a + ":" + b + ":" + old_path).c_str(), 1);
  write_command(a + "/tool", "#!/bin/sh\necho a\n");
  write_command(a + "/plain", "echo plain\n");  // no "#!": execvp runs it with sh
  mqpool::Pool pool(1);  // one executor: every call below runs in the same process
  auto run = [&](const std::string& name) {
    const auto [code, out, err] = pool.apply_async(mqpool::exec_task, Argv{name}).get(kLong);
    EXPECT_EQ(code, 0) << name << ": " << err;
    return out;
  };
  EXPECT_EQ(run("tool"), "a\n");
  EXPECT_EQ(run("tool"), "a\n");
  std::filesystem::remove(a + "/tool");
  write_command(b + "/tool", "#!/bin/sh\necho b\n");
  EXPECT_EQ(run("tool"), "b\n");
  EXPECT_EQ(run("tool"), "b\n");
  EXPECT_EQ(run("plain"), "plain\n");
  EXPECT_EQ(run("plain"), "plain\n");
  ::setenv("PATH", old_path.c_str(), 1);
}

TEST(ExecJob, ReturnsEveryFieldOfTheRun) {
  mqpool::Pool pool(1);
  const double before = unix_now();
  const auto t0 = Clock::now();
  const auto [code, signal, out, err, host, start, runtime] =
      pool.apply_async(mqpool::exec_job_task,
                       Argv{"sh", "-c", "sleep 0.2; echo out; echo err >&2; exit 3"}, "", 0)
          .get(kLong);
  const std::chrono::duration<double> took = Clock::now() - t0;
  const double after = unix_now();
  EXPECT_EQ(code, 3);
  EXPECT_EQ(signal, 0);
  EXPECT_EQ(out, "out\n");
  EXPECT_EQ(err, "err\n");
  char name[256] = {};
  ASSERT_EQ(::gethostname(name, sizeof name - 1), 0);
  EXPECT_EQ(host, name);
  // A microsecond of slack either side: start is rounded to the microsecond.
  EXPECT_GE(start, before - 1e-6);
  EXPECT_LE(start, after + 1e-6);
  EXPECT_GE(runtime, 0.2) << "the command sleeps 0.2 s";
  EXPECT_LE(runtime, took.count()) << "ran longer than the call took";
}

TEST(ExecJob, ASignalEndsTheCommandWith128PlusItAndNamesIt) {
  mqpool::Pool pool(1);
  const auto r =
      pool.apply_async(mqpool::exec_job_task, Argv{"sh", "-c", "kill -9 $$"}, "", 0).get(kLong);
  EXPECT_EQ(std::get<0>(r), 128 + 9);
  EXPECT_EQ(std::get<1>(r), 9);
}

TEST(ExecJob, ACommandThatCannotStartGives127AndSaysWhy) {
  mqpool::Pool pool(1);
  const auto r =
      pool.apply_async(mqpool::exec_job_task, Argv{"/nonexistent/cmd"}, "", 0).get(kLong);
  EXPECT_EQ(std::get<0>(r), 127);
  EXPECT_EQ(std::get<1>(r), 0);
  EXPECT_EQ(std::get<3>(r), "mqpool: cannot run /nonexistent/cmd: No such file or directory\n");
}

TEST(ExecJob, StandardInputReachesTheCommandWhole) {
  mqpool::Pool pool(1);
  // 3 MiB: many times what a pipe holds, so writing and reading must go together.
  const std::string in = random_bytes(3 << 20);
  const auto r = pool.apply_async(mqpool::exec_job_task, Argv{"cat"}, in, 0).get(kLong);
  EXPECT_EQ(std::get<0>(r), 0);
  EXPECT_TRUE(std::get<2>(r) == in)
      << "stdout: " << std::get<2>(r).size() << " bytes of " << in.size() << ", or not the same";
}

TEST(ExecJob, OutputsOfSeveralMiBComeThroughExactlyOnBothStreams) {
  mqpool::Pool pool(1);
  const std::string in = random_bytes(5 << 20);
  const auto r =
      pool.apply_async(mqpool::exec_job_task, Argv{"tee", "/dev/stderr"}, in, 0).get(kLong);
  EXPECT_EQ(std::get<0>(r), 0);
  EXPECT_TRUE(std::get<2>(r) == in) << "stdout: " << std::get<2>(r).size() << " bytes";
  EXPECT_TRUE(std::get<3>(r) == in) << "stderr: " << std::get<3>(r).size() << " bytes";
}

TEST(ExecJob, MaxOutputBoundsEachStreamAndSaysWhereItCut) {
  mqpool::Pool pool(1);
  const auto r = pool.apply_async(mqpool::exec_job_task,
                                  Argv{"sh", "-c",
                                       "head -c 1000000 /dev/zero; "
                                       "head -c 1000000 /dev/zero | tr '\\0' x >&2"},
                                  "", 1000)
                     .get(kLong);
  EXPECT_EQ(std::get<0>(r), 0) << "the command must not block on a full pipe";
  EXPECT_EQ(std::get<2>(r), std::string(1000, '\0'));
  EXPECT_EQ(std::get<3>(r), std::string(1000, 'x') +
                                "\nmqpool: standard output cut at 1000 bytes (1000000 bytes in "
                                "all)\nmqpool: standard error cut at 1000 bytes (1000000 bytes "
                                "in all)\n");
}

TEST(ExecJob, AnEmptyCommandLineIsATaskError) {
  mqpool::Pool pool(1);
  EXPECT_THROW(pool.apply_async(mqpool::exec_job_task, Argv{}, "", 0).get(kLong),
               mqpool::TaskError);
}

}  // namespace
}  // namespace itest
