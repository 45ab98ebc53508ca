// The types of the cluster test's task, shared by the task library (tasks.cpp, loaded by
// `mqpool worker --load`) and the client (cluster_client.cpp), which does not link the
// task and calls it by name through a Remote handle.
#pragma once

#include <cstdint>
#include <mqpool/mqpool.hpp>
#include <string>
#include <tuple>

namespace cluster_test {

// {index, milliseconds of CPU to burn}
using WorkArgs = std::tuple<std::int64_t, std::int32_t>;
// {index, index * index, hostname of the executor, pid of the executor}
using WorkResult = std::tuple<std::int64_t, std::int64_t, std::string, std::int64_t>;

inline constexpr const char* kWorkName = "cluster.work";

inline const mqpool::Remote<WorkResult(WorkArgs)> work_remote{kWorkName};

}  // namespace cluster_test
