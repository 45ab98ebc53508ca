#include "common/fork_clean.hpp"

#include <spdlog/details/console_globals.h>
#include <unistd.h>

#include <mutex>

#include "common/host.hpp"
#include "common/log.hpp"
#include "mqpool/registry.hpp"

namespace mqpool::detail {

namespace {

// At namespace scope and constinit, not a function-local static: a child never meets a
// guard of its initialisation, and no order of static initialisation can precede it.
constinit std::mutex g_context_mutex;

zmq::context_t make_context() {
  std::lock_guard lock(g_context_mutex);
  return zmq::context_t();
}

}  // namespace

pid_t fork_clean() {
  (void)log();
  (void)hostname();
  (void)Registry::instance();
  // console_mutex::mutex()'s static is one object process-wide (the dynamic linker
  // unifies it across libspdlog, this library and the program): the very mutex every
  // console sink locks. std::scoped_lock takes them all without imposing a lock order.
  std::scoped_lock lock(g_context_mutex, spdlog::details::console_mutex::mutex(),
                        buffer_cache_mutex());
  return ::fork();
}

ForkSafeContext::ForkSafeContext() : ctx_(make_context()) {}

void ForkSafeContext::close() {
  std::lock_guard lock(g_context_mutex);
  ctx_.close();
}

}  // namespace mqpool::detail
