// errors: what happens when a task throws or takes too long, and how to catch it.
// A failed task never breaks the pool: the last step uses it again.
//
//   build/examples/errors
#include <chrono>
#include <cmath>
#include <iostream>
#include <mqpool/mqpool.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

// Throws for negative inputs: the exception travels back to the caller as a TaskError.
double checked_sqrt(double x) {
  if (x < 0) throw std::domain_error("checked_sqrt of a negative number: " + std::to_string(x));
  return std::sqrt(x);
}

// Sleeps, then returns its argument: a task that is slower than its caller wants to wait.
int slow_identity(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

}  // namespace

MQPOOL_TASK(checked_sqrt);
MQPOOL_TASK(slow_identity);

int main() {
  mqpool::Pool pool(2);
  int failures = 0;  // expected errors that did not happen

  // 1. A task that throws: apply() rethrows it as mqpool::TaskError, with the remote
  //    exception's type and message, the task's name and the worker (host:pid).
  try {
    pool.apply(checked_sqrt, -4.0);
    ++failures;
  } catch (const mqpool::TaskError& e) {
    std::cout << "TaskError: " << e.what() << '\n'
              << "  remote_type:    " << e.remote_type() << '\n'
              << "  remote_message: " << e.remote_message() << '\n'
              << "  task_name:      " << e.task_name() << '\n'
              << "  worker:         " << e.worker() << '\n';
  }

  // 2. map() runs every task, then rethrows the error of the lowest failed index.
  try {
    pool.map(checked_sqrt, std::vector<double>{1, 4, -9, 16, -25});
    ++failures;
  } catch (const mqpool::TaskError& e) {
    std::cout << "map failed with: " << e.remote_message() << '\n';
  }

  // 3. get(timeout) gives up waiting with mqpool::TimeoutError. The task itself keeps
  //    running; its result stays available to a later get().
  auto slow = pool.apply_async(slow_identity, 1000);
  try {
    slow.get(std::chrono::milliseconds(100));
    ++failures;
  } catch (const mqpool::TimeoutError& e) {
    std::cout << "TimeoutError: " << e.what() << '\n';
  }

  // 4. The pool still works, and the slow task does finish.
  std::cout << "after the errors: sqrt(2) = " << pool.apply(checked_sqrt, 2.0)
            << ", slow task returned " << slow.get() << '\n';

  if (failures != 0) {
    std::cerr << failures << " expected error(s) were not raised\n";
    return 1;
  }
  return 0;
}
