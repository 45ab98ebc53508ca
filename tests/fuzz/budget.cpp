#include "budget.hpp"

#include <malloc.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace fuzz {
namespace {

std::atomic<std::size_t> live{0}, peak{0};
std::atomic<bool> measuring{false};

void allocated(std::size_t n) {
  if (!measuring.load(std::memory_order_relaxed)) return;
  const std::size_t now = live.fetch_add(n, std::memory_order_relaxed) + n;
  std::size_t p = peak.load(std::memory_order_relaxed);
  while (now > p && !peak.compare_exchange_weak(p, now, std::memory_order_relaxed)) {
  }
}

void freed(std::size_t n) {
  if (!measuring.load(std::memory_order_relaxed)) return;
  // What was allocated before budget_start() may be freed during it: live stays >= 0.
  std::size_t l = live.load(std::memory_order_relaxed);
  while (!live.compare_exchange_weak(l, l > n ? l - n : 0, std::memory_order_relaxed)) {
  }
}

}  // namespace

void budget_start() {
  measuring = false;
  live = 0;
  peak = 0;
  measuring = true;
}

void budget_check(const char* target, std::size_t size) {
  measuring = false;
  const std::size_t limit = kBaseBytes + kBytesPerInputByte * size;
  if (peak <= limit) return;
  std::fprintf(stderr, "%s: an input of %zu bytes grew the heap by %zu bytes (budget %zu)\n",
               target, size, peak.load(), limit);
  std::abort();
}

}  // namespace fuzz

#if defined(MQPOOL_SANITIZER_MALLOC)
// A sanitizer (libFuzzer's ASan, or make sanitize's) owns malloc here, and interposing
// it too would break its start-up; it calls these hooks around every allocation.
#include <sanitizer/allocator_interface.h>

namespace {
void on_malloc(const volatile void*, std::size_t n) { fuzz::allocated(n); }
void on_free(const volatile void* p) {
  fuzz::freed(__sanitizer_get_allocated_size(const_cast<const void*>(p)));
}
[[maybe_unused]] const int installed =
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}  // namespace
#else
// glibc's own entry points, which its malloc, calloc, realloc and free are names for:
// the replay's count, then hand over. The aligned forms are not counted (the codec does
// not use them); they share the same heap, so mixing is safe.
extern "C" void* __libc_malloc(std::size_t);
extern "C" void* __libc_calloc(std::size_t, std::size_t);
extern "C" void* __libc_realloc(void*, std::size_t);
extern "C" void __libc_free(void*);

extern "C" void* malloc(std::size_t n) {
  void* p = __libc_malloc(n);
  if (p != nullptr) fuzz::allocated(malloc_usable_size(p));
  return p;
}

extern "C" void* calloc(std::size_t n, std::size_t each) {
  void* p = __libc_calloc(n, each);
  if (p != nullptr) fuzz::allocated(malloc_usable_size(p));
  return p;
}

extern "C" void* realloc(void* old, std::size_t n) {
  const std::size_t was = old != nullptr ? malloc_usable_size(old) : 0;
  void* p = __libc_realloc(old, n);
  if (p == nullptr) return p;  // a failed realloc leaves `old` as it was
  fuzz::freed(was);
  fuzz::allocated(malloc_usable_size(p));
  return p;
}

extern "C" void free(void* p) {
  if (p != nullptr) fuzz::freed(malloc_usable_size(p));
  __libc_free(p);
}
#endif
