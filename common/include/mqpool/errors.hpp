// mqpool's exception types and the wire error codes that carry them.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace mqpool {

// What travels on the wire when a task fails; mapped back to an exception type on the client.
enum class ErrorCode : std::uint8_t {
  task = 1,           // the task threw: TaskError
  timeout = 2,        // the task ran past task_timeout: TimeoutError
  worker_lost = 3,    // the executor died on every try: WorkerLostError
  pool_state = 4,     // the pool stopped before the task finished: PoolStateError
  serialization = 5,  // arguments or result could not be decoded: SerializationError
  unknown_task = 6,   // no worker knows the function: UnknownTaskError
  connection = 7,     // the broker could not be reached: ConnectionError
  initializer = 8,    // the pool's initializer threw in the executor: TaskError
};

// Base of every mqpool exception; what() is one readable line.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A task threw. Carries the remote exception's demangled type and what(), the task's
// name and the worker ("host:pid") that ran it.
class TaskError : public Error {
 public:
  TaskError(std::string remote_type, std::string remote_message, std::string task_name,
            std::string worker);
  const std::string& remote_type() const noexcept { return remote_type_; }
  const std::string& remote_message() const noexcept { return remote_message_; }
  const std::string& task_name() const noexcept { return task_name_; }
  const std::string& worker() const noexcept { return worker_; }

 private:
  std::string remote_type_, remote_message_, task_name_, worker_;
};

// get()/next() timed out, or a task ran past PoolOptions::task_timeout.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

// The task's worker process died (signal or exit) on every try.
class WorkerLostError : public Error {
 public:
  using Error::Error;
};

// The pool is not running, or join() was called before close()/terminate().
class PoolStateError : public Error {
 public:
  using Error::Error;
};

// An argument or result could not be encoded or decoded.
class SerializationError : public Error {
 public:
  using Error::Error;
};

// The function is not registered (client) or no worker knows its name.
class UnknownTaskError : public Error {
 public:
  using Error::Error;
};

// The broker could not be reached within the connect timeout.
class ConnectionError : public Error {
 public:
  using Error::Error;
};

// A task failure as it travels: code plus text. The fields of TaskError ride along.
struct WireError {
  ErrorCode code = ErrorCode::task;
  std::string type;     // demangled exception type (task errors)
  std::string message;  // what()
  std::string task;     // task name
  std::string worker;   // "host:pid"
};

// Throws the exception type that `e.code` stands for. Never returns.
[[noreturn]] void throw_error(const WireError& e);

}  // namespace mqpool
