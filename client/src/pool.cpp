#include "mqpool/pool.hpp"

#include "pool_core.hpp"

namespace mqpool {

Pool::Pool() : Pool(PoolOptions{}) {}
Pool::Pool(int processes) : Pool(PoolOptions{.processes = processes}) {}
Pool::Pool(PoolOptions options) : core_(std::make_shared<detail::PoolCore>(std::move(options))) {}
Pool::~Pool() = default;  // PoolCore's destructor closes and joins unless terminated

void Pool::close() { core_->close(); }
void Pool::terminate() { core_->terminate(); }
void Pool::join() { core_->join(); }

}  // namespace mqpool
