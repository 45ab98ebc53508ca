#include "mqpool/errors.hpp"

namespace mqpool {

TaskError::TaskError(std::string remote_type, std::string remote_message, std::string task_name,
                     std::string worker)
    : Error(remote_type + ": " + remote_message + " (task '" + task_name + "' on " + worker + ")"),
      remote_type_(std::move(remote_type)),
      remote_message_(std::move(remote_message)),
      task_name_(std::move(task_name)),
      worker_(std::move(worker)) {}

void throw_error(const WireError& e) {
  switch (e.code) {
    case ErrorCode::task:
    case ErrorCode::initializer:
      throw TaskError(e.type, e.message, e.task, e.worker);
    case ErrorCode::timeout:
      throw TimeoutError(e.message);
    case ErrorCode::worker_lost:
      throw WorkerLostError(e.message);
    case ErrorCode::pool_state:
      throw PoolStateError(e.message);
    case ErrorCode::serialization:
      throw SerializationError(e.message);
    case ErrorCode::unknown_task:
      throw UnknownTaskError(e.message);
    case ErrorCode::connection:
      throw ConnectionError(e.message);
  }
  throw Error(e.message);
}

}  // namespace mqpool
