// Where a pool's counters start, for tests only: a test sets these before it makes a
// Pool, to cross a limit (an old 32-bit boundary) with real work in a few calls instead
// of billions. A Pool reads them once, when it is made; they are never set otherwise.
#pragma once

#include <cstdint>

namespace mqpool::detail {

struct TestHooks {
  std::uint64_t first_job = 1;    // the pool's first job id
  std::uint64_t first_batch = 0;  // the session's first batch number
  std::uint64_t first_index = 0;  // the index of an imap stream's first task
};

inline TestHooks g_test_hooks;

}  // namespace mqpool::detail
