// Compiler bugs the build works around (CMakeLists.txt), checked where they bite, so
// that a workaround that stops applying fails here rather than in a pool's processes.
#include <gtest/gtest.h>

#include "common/log.hpp"

namespace {

int destroyed = 0;

struct Counted {
  int value = 0;
  ~Counted() { ++destroyed; }
};

// The shape of the agent's handle(): a log call with a temporary in it, then a `case`
// label after it. Only the path that made the temporary may destroy it.
int log_or_not(int which) {
  switch (which) {
    case 0:
      mqpool::detail::log().trace("counted {}", Counted{1}.value);
      return 0;
    default:
      return 1;
  }
}

}  // namespace

// Clang before 17 drops the cleanups of a full-expression that holds a consteval call
// (llvm/llvm-project#60709), and fmt's format strings are consteval: the temporary was
// then destroyed at the end of the switch's block, on every way out of it, the default
// label's included, whether it had been made or not. The agent so freed a Bye it never
// decoded on each HEARTBEAT and REFUSED (free(): invalid pointer).
TEST(Toolchain, ATemporaryInALogCallIsDestroyedOnlyOnThePathThatMadeIt) {
  destroyed = 0;
  EXPECT_EQ(log_or_not(1), 1);
  EXPECT_EQ(destroyed, 0) << "a path that never made the temporary destroyed it";
  EXPECT_EQ(log_or_not(0), 0);
  EXPECT_EQ(destroyed, 1);
}
