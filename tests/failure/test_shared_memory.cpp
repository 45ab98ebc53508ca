// Large arguments and values through shared memory (docs/ARCHITECTURE.md, "Large
// payloads"): they travel as memfds that the peer maps, each reused once its tasks are
// answered, a killed executor's task is retried from the same memory, an executor that
// leaves (maxtasksperchild) still delivers its last values, and a killed client leaves
// nothing behind. What a process holds is read from /proc: a memfd's descriptor links to
// "/memfd:<name> (deleted)", and its mappings name it the same way.
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mqpool/mqpool.hpp>
#include <numeric>

#include "common.hpp"

namespace ftest {
namespace {

constexpr std::int64_t kBig = std::int64_t{1} << 20;

// A local pool that sends kBig bytes through shared memory (the default threshold is
// higher: measured, it pays only for larger payloads).
mqpool::PoolOptions shm_pool(int processes, int maxtasksperchild = 0) {
  return mqpool::PoolOptions{.processes = processes,
                             .maxtasksperchild = maxtasksperchild,
                             .shared_memory_threshold = kBig / 4};
}

// How many descriptors of `pid` are open on memfds called `name`.
int memfds(pid_t pid, const std::string& name) {
  int n = 0;
  std::error_code ec;
  const std::string want = "/memfd:" + name;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    const auto target = std::filesystem::read_symlink(e.path(), ec);
    if (!ec && target.string().starts_with(want)) ++n;
  }
  return n;
}

// Whether `pid` has a memfd called `name` mapped.
bool maps_memfd(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  for (std::string line; std::getline(in, line);)
    if (line.find("/memfd:" + name) != std::string::npos) return true;
  return false;
}

std::set<std::string> dev_shm() {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) out.insert(e.path());
  return out;
}

// The memfd is kept once the chunk is answered, for the next large chunk: two in a row
// use one.
TEST(SharedMemory, LargeArgumentsTravelAsAMemfdReusedOnceAnswered) {
  TempDir dir;
  mqpool::Pool pool(shm_pool(2));
  OpenOnExit gate(dir.file("gate"));
  for (int i = 0; i < 2; ++i) {
    const std::string pid_file = dir.file("pid-" + std::to_string(i));
    auto r = pool.apply_async(bytes_then_wait, pid_file, dir.file("gate"), std::int64_t{60000},
                              pattern_bytes(kBig, i));
    const auto p = await_pid_pair(pid_file);
    ASSERT_TRUE(p.has_value()) << "task " << i << " did not start";
    EXPECT_EQ(memfds(::getpid(), "mqpool-args"), 1) << "the client holds one memfd, task " << i;
    EXPECT_TRUE(maps_memfd(p->pid, "mqpool-args")) << "the executor maps the client's memfd";
    create_file(dir.file("gate"));
    EXPECT_EQ(bounded(kLong, "get()", [&] { return r.get(kLong); }), kBig);
    std::filesystem::remove(dir.file("gate"));
  }
}

TEST(SharedMemory, LargeValuesComeBackThroughTheExecutorsSegments) {
  mqpool::Pool pool(shm_pool(2));
  std::vector<std::int64_t> seeds(12);
  std::iota(seeds.begin(), seeds.end(), 0);
  const auto out = bounded(kLong, "starmap", [&] {
    std::vector<std::tuple<std::int64_t, std::int64_t>> args;
    for (auto s : seeds) args.emplace_back(kBig, s);
    return pool.starmap(make_bytes, args, 1);
  });
  ASSERT_EQ(out.size(), seeds.size());
  for (std::size_t i = 0; i < out.size(); ++i)
    EXPECT_TRUE(out[i] == pattern_bytes(kBig, seeds[i])) << "value " << i << " differs";
  int segments = 0;
  for (pid_t agent : live_children_of(::getpid()))
    for (pid_t executor : live_children_of(agent)) segments += memfds(executor, "mqpool-values");
  EXPECT_GE(segments, 1) << "no executor wrote its values into a segment of its own";
}

TEST(SharedMemory, ThresholdZeroSendsEverythingInline) {
  TempDir dir;
  mqpool::Pool pool(mqpool::PoolOptions{.processes = 1, .shared_memory_threshold = 0});
  OpenOnExit gate(dir.file("gate"));
  auto r = pool.apply_async(bytes_then_wait, dir.file("pid"), dir.file("gate"), std::int64_t{60000},
                            pattern_bytes(kBig, 2));
  const auto p = await_pid_pair(dir.file("pid"));
  ASSERT_TRUE(p.has_value()) << "the task did not start";
  EXPECT_EQ(memfds(::getpid(), "mqpool-args"), 0);
  create_file(dir.file("gate"));
  EXPECT_EQ(bounded(kLong, "get()", [&] { return r.get(kLong); }), kBig);
  const auto v = bounded(kLong, "apply", [&] { return pool.apply(make_bytes, kBig, 3); });
  EXPECT_TRUE(v == pattern_bytes(kBig, 3));
  EXPECT_EQ(memfds(p->pid, "mqpool-values"), 0);
}

TEST(SharedMemory, ANegativeThresholdIsRefused) {
  EXPECT_THROW(mqpool::Pool(mqpool::PoolOptions{.processes = 1, .shared_memory_threshold = -1}),
               std::invalid_argument);
}

// The retry maps the same memfd: the client keeps it until the task has its outcome.
TEST(SharedMemory, AKilledExecutorsLargeTaskIsRetriedFromTheSameMemory) {
  TempDir dir;
  mqpool::Pool pool(shm_pool(2));
  const auto bytes = pattern_bytes(kBig, 4);
  const auto out = bounded(kLong, "apply", [&] {
    return pool.apply(fated_echo, Fate{subdir(dir, "fate"), 1, kSigkill, 0}, bytes);
  });
  EXPECT_EQ(tries(dir.file("fate")), 2) << "one death, one retry";
  EXPECT_TRUE(out == bytes) << "the retry returned other bytes";
  // The dead executor still counts as a reader of that memfd: the next chunk goes to
  // another one, and the first is closed.
  const auto next = pattern_bytes(kBig, 5);
  const auto again = bounded(kLong, "apply", [&] {
    return pool.apply(fated_echo, Fate{"", 0, kSigkill, 0}, next);
  });
  EXPECT_TRUE(again == next);
  EXPECT_EQ(memfds(::getpid(), "mqpool-args"), 1);
}

// Each executor leaves after one chunk: its values must outlive it until the client
// has mapped them.
TEST(SharedMemory, AnExecutorThatLeavesStillDeliversItsLargeValues) {
  mqpool::Pool pool(shm_pool(2, 1));
  std::vector<std::tuple<std::int64_t, std::int64_t>> args;
  for (std::int64_t s = 0; s < 6; ++s) args.emplace_back(kBig, s);
  const auto out = bounded(kLong, "starmap", [&] { return pool.starmap(make_bytes, args, 1); });
  ASSERT_EQ(out.size(), args.size());
  for (std::size_t i = 0; i < out.size(); ++i)
    EXPECT_TRUE(out[i] == pattern_bytes(kBig, static_cast<std::int64_t>(i))) << "value " << i;
}

TEST(SharedMemory, AKilledClientLeavesNoSharedMemoryBehind) {
  const auto shm_before = dev_shm();
  TempDir dir;
  SubreaperScope reaper;
  ASSERT_TRUE(reaper.ok()) << std::strerror(errno);
  Scenario client_process("orphan_client", dir.path(), {"big"});  // main.cpp's scenario
  const pid_t client = client_process.pid();
  ASSERT_GT(client, 0);
  ASSERT_TRUE(await_pid_pair(dir.file("ready")).has_value()) << "the client did not start";
  std::istringstream in(read_file(dir.file("ready")));
  pid_t c = 0, agent = 0, e0 = 0, e1 = 0;
  in >> c >> agent >> e0 >> e1;
  ASSERT_EQ(c, client);
  EXPECT_EQ(memfds(client, "mqpool-args"), 2) << "one memfd per running task";
  EXPECT_TRUE(maps_memfd(e0, "mqpool-args"));
  EXPECT_TRUE(maps_memfd(e1, "mqpool-args"));

  const int status = client_process.kill();
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "client status " << status;
  // A memfd lives as long as a descriptor or mapping of it: once every process of the
  // pool is gone, so is its memory. Nor is anything left under /dev/shm.
  EXPECT_TRUE(all_gone_within({agent, e0, e1}, 10s));
  EXPECT_EQ(dev_shm(), shm_before);
}

}  // namespace
}  // namespace ftest
