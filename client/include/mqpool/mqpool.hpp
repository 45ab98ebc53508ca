// mqpool: Python's multiprocessing.Pool in C++, over a ZeroMQ broker. See docs/API.md.
#pragma once

#include "mqpool/async_result.hpp"
#include "mqpool/broker.hpp"
#include "mqpool/cluster.hpp"
#include "mqpool/errors.hpp"
#include "mqpool/options.hpp"
#include "mqpool/pool.hpp"
#include "mqpool/registry.hpp"
#include "mqpool/result_stream.hpp"
#include "mqpool/worker.hpp"
