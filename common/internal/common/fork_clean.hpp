// Forking from a program that may run other threads (issue 11, item 6): the one way
// mqpool forks its processes, and the ZeroMQ context a Pool makes beside such forks.
#pragma once

#include <sys/types.h>

#include <mutex>
#include <zmq.hpp>

namespace mqpool::detail {

// fork(2) for every process of ours: a local Pool's agent (PoolCore::start_local) and
// the agent's executors (mqpool.exec's clone + exec is not one of them). Returns what
// fork() returns.
//
// The child of fork() has only the forking thread: a lock that another thread held at
// that moment stays locked in the child for ever. So that the locks our children need are
// free there, this
// - makes our logger (log()) and the other function-local statics our children read
//   (hostname(), the task registry) first, in the parent: a child making them would take
//   spdlog's registry mutex, or meet a static's guard that another thread held;
// - forks while this thread holds spdlog's console mutex, the sink mutex that every
//   console logger of the process shares, the program's own included (no thread is then
//   writing a console log line, nor in the localtime that spdlog's console sinks call
//   under it), and the mutex that every ForkSafeContext is made and closed under (no
//   other thread's Pool is in zmq_ctx_new or zmq_ctx_term, whose process-wide locks, and
//   libsodium's, the child's own context takes). The child's copy of this function's
//   lock guard releases them there, which is fine for std::mutex.
// glibc itself resets malloc's, stdio's and the dynamic loader's locks in the child.
// Meanwhile the program's threads wait to write a console log line for as long as the
// fork takes, and a pthread_atfork handler that logs to a spdlog console logger would
// deadlock.
//
// The child may: allocate; use stdio; log with log() and with spdlog's console loggers
// (the program's default logger too); make ZeroMQ contexts and sockets of its own; run
// registered tasks; fork again through this function.
// The child must not: touch a ZeroMQ context or socket of the parent, not even to close
// it (leave with _exit, not exit); rely on any thread of the parent; take any other lock
// that some thread of the parent may have held. Those stay held: the program's own
// mutexes; spdlog's registry mutex (making, finding or dropping a logger,
// spdlog::set_level) and its file sinks' mutexes; glibc's tz lock (localtime, mktime)
// when the program calls those outside spdlog's console sinks; libzmq's and libsodium's
// locks when the program makes or closes contexts of its own, outside a Pool.
pid_t fork_clean();

// The lock of the large Buffers kept for reuse (buffer.cpp): fork_clean() holds it
// across the fork, since any thread may allocate or free a large buffer.
std::mutex& buffer_cache_mutex();

// A ZeroMQ context made (zmq_ctx_new) and closed (zmq_ctx_term) under the mutex that
// fork_clean() holds, so that no fork of ours copies libzmq's process-wide locks while
// this context takes them. Closing waits, as zmq_ctx_term does, until the context's
// sockets are closed and their linger has passed, and holds that mutex meanwhile: forks
// and other contexts wait too (our sockets linger at most 1 s).
class ForkSafeContext {
 public:
  ForkSafeContext();
  ~ForkSafeContext() { close(); }
  ForkSafeContext(const ForkSafeContext&) = delete;
  ForkSafeContext& operator=(const ForkSafeContext&) = delete;

  zmq::context_t& get() { return ctx_; }
  // Closes the context (once; later calls do nothing).
  void close();

 private:
  zmq::context_t ctx_;
};

}  // namespace mqpool::detail
