// apply, apply_async (both forms), Callbacks, and AsyncResult on a real local pool.
#include <atomic>
#include <map>
#include <mqpool/mqpool.hpp>
#include <mutex>
#include <thread>

#include "helpers.hpp"
#include "tasks.hpp"

namespace itest {
namespace {

TEST(Apply, ReturnsTheResult) {
  mqpool::Pool pool(2);
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(square, std::int64_t{7}); }), 49);
  EXPECT_EQ(bounded(kLong, "apply", [&] { return pool.apply(add, 2, 3); }), 5);
}

TEST(Apply, ZeroArgumentsAndVoidResult) {
  TempDir dir;
  mqpool::Pool pool(2);
  bounded(kLong, "apply(noop)", [&] { pool.apply(noop); });
  bounded(kLong, "apply(touch)", [&] { pool.apply(touch, dir.file("t")); });
  EXPECT_TRUE(file_exists(dir.file("t")));  // the void task really ran
}

TEST(Apply, RethrowsTheTaskError) {
  mqpool::Pool pool(2);
  EXPECT_THROW(bounded(kLong, "apply", [&] { return pool.apply(fail_if, 4, 4); }),
               mqpool::TaskError);
}

TEST(ApplyAsync, DoesNotBlockAndGetReturnsTheResult) {
  TempDir dir;
  mqpool::Pool pool(2);
  OpenOnExit open_gate(dir.file("gate"));  // even if an assertion fails
  const std::string gate = dir.file("gate");
  // The task cannot finish before the gate exists: apply_async must return first.
  auto r =
      bounded(kPrompt, "apply_async", [&] { return pool.apply_async(wait_file, gate, 11, 60000); });
  EXPECT_FALSE(r.ready());
  create_file(gate);
  EXPECT_EQ(r.get(kLong), 11);
  EXPECT_TRUE(r.ready());
  EXPECT_TRUE(r.successful());
}

// Pool(2) runs two tasks at once, as Python's Pool does: a worker that is idle takes a
// waiting task instead of leaving it queued behind a long task on the other worker.
TEST(ApplyAsync, AnIdleWorkerTakesTasksWhileAnotherIsBusy) {
  TempDir dir;
  mqpool::Pool pool(2);
  OpenOnExit open_gate(dir.file("gate"));
  auto blocked = pool.apply_async(wait_file, dir.file("gate"), 1, 60000);
  std::vector<mqpool::AsyncResult<std::int64_t>> quick;
  for (std::int64_t i = 0; i < 5; ++i) quick.push_back(pool.apply_async(square, i));
  // The gate opens only after every quick task finished: a quick task queued behind the
  // blocked one makes this wait time out.
  const auto deadline = Clock::now() + kLong;
  for (std::int64_t i = 0; i < 5; ++i) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    ASSERT_TRUE(quick[i].wait_for(std::max(left, std::chrono::milliseconds(0))))
        << "task " << i << " waited behind the busy worker while the other one was idle";
    EXPECT_EQ(quick[i].get(), i * i);
  }
  EXPECT_FALSE(blocked.ready());
  create_file(dir.file("gate"));
  EXPECT_EQ(blocked.get(kLong), 1);
}

// Calls submitted together travel as one batch (the session coalesces them); the broker
// must still hand slow ones out one at a time, or one process would run them all.
TEST(ApplyAsync, SlowCallsSubmittedTogetherStillSpreadOverTheWorkers) {
  mqpool::Pool pool(2);
  std::vector<mqpool::AsyncResult<std::int64_t>> results;
  for (int i = 0; i < 6; ++i) results.push_back(pool.apply_async(slow_pid, std::int64_t{200}));
  std::map<std::int64_t, int> calls_by_pid;
  for (auto& r : results) ++calls_by_pid[r.get(kLong)];
  ASSERT_EQ(calls_by_pid.size(), 2u) << "one process ran every call";
  for (const auto& [pid, n] : calls_by_pid)
    EXPECT_LE(n, 4) << "process " << pid << " ran " << n << " of 6 slow calls";
}

TEST(ApplyAsync, ManyConcurrentSubmissions) {
  mqpool::Pool pool(2);
  std::vector<mqpool::AsyncResult<std::int64_t>> results;
  for (std::int64_t i = 0; i < 2000; ++i) results.push_back(pool.apply_async(square, i));
  for (std::int64_t i = 0; i < 2000; ++i) ASSERT_EQ(results[i].get(kLong), i * i) << i;
}

TEST(ApplyAsync, CallbackRunsBeforeTheResultIsReady) {
  mqpool::Pool pool(2);
  std::mutex m;
  std::optional<mqpool::AsyncResult<std::int64_t>> handle;
  std::atomic<int> calls{0};
  std::atomic<std::int64_t> seen{0};
  std::atomic<bool> ready_inside{true};
  std::atomic<bool> error_called{false};
  {
    std::lock_guard lock(m);  // the callback cannot look at `handle` before it is set
    handle =
        pool.apply_async(square, std::tuple{std::int64_t{9}},
                         mqpool::Callbacks<std::int64_t>{
                             .callback =
                                 [&](const std::int64_t& v) {
                                   std::lock_guard inner(m);
                                   ready_inside = handle->ready();
                                   seen = v;
                                   ++calls;
                                 },
                             .error_callback = [&](const mqpool::Error&) { error_called = true; }});
  }
  EXPECT_EQ(handle->get(kLong), 81);
  // get() returned, so the callback has already run, exactly once, before readiness.
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(seen.load(), 81);
  EXPECT_FALSE(ready_inside.load()) << "the callback ran after the result became ready";
  EXPECT_FALSE(error_called.load());
}

TEST(ApplyAsync, ErrorCallbackRunsBeforeTheResultIsReady) {
  mqpool::Pool pool(2);
  std::atomic<int> errors{0};
  std::atomic<bool> callback_called{false};
  std::string message;
  std::string remote_message;
  auto r = pool.apply_async(fail_if, std::tuple{5, 5},
                            mqpool::Callbacks<std::int64_t>{
                                .callback = [&](const std::int64_t&) { callback_called = true; },
                                .error_callback =
                                    [&](const mqpool::Error& e) {
                                      message = e.what();
                                      if (auto* t = dynamic_cast<const mqpool::TaskError*>(&e))
                                        remote_message = t->remote_message();
                                      ++errors;
                                    }});
  EXPECT_THROW(r.get(kLong), mqpool::TaskError);
  EXPECT_EQ(errors.load(), 1);
  EXPECT_FALSE(callback_called.load());
  EXPECT_EQ(remote_message, "boom 5");
  EXPECT_NE(message.find("boom 5"), std::string::npos) << message;
}

TEST(ApplyAsync, VoidCallback) {
  mqpool::Pool pool(2);
  std::atomic<int> calls{0};
  auto r =
      pool.apply_async(noop, std::tuple{}, mqpool::Callbacks<void>{.callback = [&] { ++calls; }});
  r.get(kLong);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_TRUE(r.successful());
}

TEST(AsyncResult, GetWithTimeoutThrowsTimeoutErrorPromptly) {
  TempDir dir;
  mqpool::Pool pool(2);
  OpenOnExit open_gate(dir.file("never"));  // even if an assertion fails
  auto r = pool.apply_async(wait_file, dir.file("never"), 1, 60000);
  const auto t = elapsed([&] { EXPECT_THROW(r.get(200ms), mqpool::TimeoutError); });
  EXPECT_LT(t, kPrompt);
  EXPECT_FALSE(r.ready());
  // A timed-out get() does not spoil the result: it can still arrive.
  create_file(dir.file("never"));
  EXPECT_EQ(r.get(kLong), 1);
}

TEST(AsyncResult, WaitForAndReadyAndWait) {
  TempDir dir;
  mqpool::Pool pool(2);
  OpenOnExit open_gate(dir.file("gate"));  // even if an assertion fails
  auto r = pool.apply_async(wait_file, dir.file("gate"), 3, 60000);
  EXPECT_FALSE(r.wait_for(100ms));
  EXPECT_FALSE(r.ready());
  create_file(dir.file("gate"));
  EXPECT_TRUE(r.wait_for(kLong));
  EXPECT_TRUE(r.ready());
  bounded(kPrompt, "wait() on a ready result", [&] { r.wait(); });
  EXPECT_EQ(r.get(), 3);

  auto r2 = pool.apply_async(square, std::int64_t{4});
  bounded(kLong, "wait()", [&] { r2.wait(); });
  EXPECT_TRUE(r2.ready());
  EXPECT_EQ(bounded(kPrompt, "get()", [&] { return r2.get(); }), 16);
  EXPECT_EQ(r2.get(), 16);  // get() can be called again
}

TEST(AsyncResult, SuccessfulThrowsUntilReady) {
  TempDir dir;
  mqpool::Pool pool(2);
  OpenOnExit open_gate(dir.file("gate"));  // even if an assertion fails
  auto r = pool.apply_async(wait_file, dir.file("gate"), 3, 60000);
  EXPECT_THROW((void)r.successful(), mqpool::Error);
  create_file(dir.file("gate"));
  ASSERT_TRUE(r.wait_for(kLong));
  EXPECT_TRUE(r.successful());

  auto bad = pool.apply_async(fail_if, 1, 1);
  ASSERT_TRUE(bad.wait_for(kLong));
  EXPECT_FALSE(bad.successful());
  EXPECT_THROW(bad.get(kPrompt), mqpool::TaskError);
  EXPECT_THROW(bad.get(kPrompt), mqpool::TaskError);  // every get() rethrows
}

TEST(AsyncResult, CopiesShareOneResult) {
  TempDir dir;
  mqpool::Pool pool(2);
  OpenOnExit open_gate(dir.file("gate"));  // even if an assertion fails
  auto assigned = pool.apply_async(square, std::int64_t{0});
  ASSERT_EQ(assigned.get(kLong), 0);
  auto original = pool.apply_async(wait_file, dir.file("gate"), 42, 60000);
  mqpool::AsyncResult<std::int64_t> copy = original;  // copied before completion
  assigned = original;                                // copy-assigned over a finished result
  EXPECT_FALSE(copy.ready());
  create_file(dir.file("gate"));
  EXPECT_EQ(copy.get(kLong), 42);  // waiting on the copy sees the original's completion
  EXPECT_TRUE(original.ready());
  EXPECT_TRUE(assigned.ready());
  EXPECT_EQ(original.get(kPrompt), 42);
  EXPECT_EQ(assigned.get(kPrompt), 42);

  auto failed = pool.apply_async(fail_if, 2, 2);
  auto failed_copy = failed;
  EXPECT_THROW(failed.get(kLong), mqpool::TaskError);
  EXPECT_TRUE(failed_copy.ready());
  EXPECT_FALSE(failed_copy.successful());
  EXPECT_THROW(failed_copy.get(kPrompt), mqpool::TaskError);
}

TEST(AsyncResult, CopyOutlivesThePool) {
  std::optional<mqpool::AsyncResult<std::int64_t>> kept;
  {
    mqpool::Pool pool(2);
    kept = pool.apply_async(square, std::int64_t{12});
  }
  ASSERT_TRUE(kept->ready());
  EXPECT_EQ(kept->get(kPrompt), 144);
}

TEST(AsyncResult, VoidResult) {
  TempDir dir;
  mqpool::Pool pool(2);
  mqpool::AsyncResult<void> r = pool.apply_async(touch, dir.file("v"));
  bounded(kLong, "get() of a void result", [&] { r.get(kLong); });
  EXPECT_TRUE(r.successful());
  EXPECT_TRUE(file_exists(dir.file("v")));
}

}  // namespace
}  // namespace itest
