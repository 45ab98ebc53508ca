// Whether this test binary is built with a sanitizer (`make sanitize`, CMakeLists.txt's
// MQPOOL_SANITIZE), for the few tests one cannot run. Such a test starts with
// MQPOOL_SKIP_UNDER_ASAN("...") or MQPOOL_SKIP_UNDER_TSAN("..."), and its own comment
// says why; ctest reports it as skipped in that build only. A single check that one
// cannot run tests kAddressSanitizer or kThreadSanitizer, with its reason beside it.
// The one list of them all:  git grep -n 'SKIP_UNDER_\|Sanitizer)' tests
#pragma once

#include <gtest/gtest.h>

namespace mqpool_test {

#if defined(__has_feature)
inline constexpr bool kAddressSanitizer = __has_feature(address_sanitizer);
inline constexpr bool kThreadSanitizer = __has_feature(thread_sanitizer);
#else  // GCC before 14 has no __has_feature, but these two macros
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#endif

}  // namespace mqpool_test

// Braced: gtest's assertions are if-else statements, and GCC warns of a dangling else.
#define MQPOOL_SKIP_UNDER_ASAN(why)                     \
  if (::mqpool_test::kAddressSanitizer) {               \
    GTEST_SKIP() << "not under AddressSanitizer: " why; \
  }
#define MQPOOL_SKIP_UNDER_TSAN(why)                    \
  if (::mqpool_test::kThreadSanitizer) {               \
    GTEST_SKIP() << "not under ThreadSanitizer: " why; \
  }
