// Compiled (not run) by the test integration.UserCodeCompilesWarningFree with the
// flags a careful user builds with: docs/API.md has users write designated initializers
// that leave fields to their defaults, and that must not warn.
#include <chrono>
#include <mqpool/mqpool.hpp>
#include <vector>

void user_code() {
  [[maybe_unused]] mqpool::PoolOptions local{.processes = 4, .maxtasksperchild = 10};
  [[maybe_unused]] mqpool::PoolOptions cluster{.connect = "tcp://broker-host:5555"};
  [[maybe_unused]] mqpool::PoolOptions timed{.task_timeout = std::chrono::milliseconds(500)};
  [[maybe_unused]] mqpool::Callbacks<int> on_value{.callback = [](const int&) {}};
  [[maybe_unused]] mqpool::Callbacks<int> on_error{.error_callback = [](const mqpool::Error&) {}};
  [[maybe_unused]] mqpool::Callbacks<void> on_done{.callback = [] {}};
  [[maybe_unused]] mqpool::MapOptions<int> chunked{.chunksize = 8};
  [[maybe_unused]] mqpool::MapOptions<int> with_callback{
      .callback = [](const std::vector<int>&) {}};
}
