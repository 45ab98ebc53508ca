// BrokerCore's memory must not grow with the number of tasks it has served: a broker
// runs for weeks. Measured with glibc's mallinfo2 (bytes in use on the heap).
#include <gtest/gtest.h>
#include <malloc.h>

#include "broker_harness.hpp"

namespace unit_broker {
namespace {

std::size_t heap_in_use() { return mallinfo2().uordblks; }

// One apply(): a single chunk submitted, dispatched, answered.
void one_round_trip(Harness& h, std::uint64_t seq) {
  h.submit_singles("c1", seq, 1);
  auto sent = h.take();
  ASSERT_EQ(sent.size(), 1u);
  h.answer(sent[0]);
  ASSERT_EQ(h.take().size(), 1u);
}

// Two executors with the agents' default credit of 2, and one task at a time: an idle
// executor is always available. Nothing is queued or running between round trips, so
// the broker's heap use must stay flat.
TEST(BrokerMemory, LightLoadWithIdleExecutorsDoesNotGrowTheHeap) {
  Harness h;
  h.ready(1, 1, 2);
  h.ready(1, 2, 2);
  std::uint64_t seq = 0;
  for (; seq < 20000; ++seq) one_round_trip(h, seq);  // warm-up: containers reach their size
  const std::size_t before = heap_in_use();
  for (; seq < 220000; ++seq) one_round_trip(h, seq);
  const std::size_t after = heap_in_use();
  EXPECT_EQ(h.core.queued(), 0u);
  EXPECT_EQ(h.core.running(), 0u);
  const double growth = after > before ? static_cast<double>(after - before) : 0.0;
  EXPECT_LT(growth, 1 << 20) << "the heap grew by " << growth / 200000
                             << " bytes per task over 200,000 tasks";
}

// Executors that come and go (maxtasksperchild): their traces must go with them. Credit 1,
// so that this measures the churn alone.
TEST(BrokerMemory, ExecutorChurnDoesNotGrowTheHeap) {
  Harness h;
  h.hello(1);
  std::uint32_t pid = 1;
  h.ready(1, pid, 1);
  auto churn = [&](std::uint64_t seq) {
    one_round_trip(h, seq);
    h.exited(1, pid, "maxtasksperchild", /*planned=*/true);
    h.ready(1, ++pid, 1);
  };
  std::uint64_t seq = 0;
  for (; seq < 10000; ++seq) churn(seq);
  const std::size_t before = heap_in_use();
  for (; seq < 110000; ++seq) churn(seq);
  const std::size_t after = heap_in_use();
  EXPECT_EQ(h.core.executors(), 1u);
  const double growth = after > before ? static_cast<double>(after - before) : 0.0;
  EXPECT_LT(growth, 1 << 20) << "the heap grew by " << growth / 100000 << " bytes per executor";
}

}  // namespace
}  // namespace unit_broker
