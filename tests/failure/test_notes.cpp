// The README's notes under "How mqpool behaves where Python's Pool does not" that the
// other files do not cover: join() waits for every submitted task; what an imap stream
// with unread input does after join().
#include <mqpool/mqpool.hpp>
#include <ranges>

#include "common.hpp"

namespace ftest {
namespace {

TEST(Notes, JoinWaitsForEverySubmittedTask) {
  TempDir dir;
  mqpool::Pool pool(2);
  std::vector<Step> in;
  for (int i = 0; i < 10; ++i) in.push_back(Step{dir.path(), i, 50});
  auto mapped = pool.map_async(step, in);
  std::vector<mqpool::AsyncResult<std::int64_t>> applied;
  for (int i = 0; i < 4; ++i)
    applied.push_back(pool.apply_async(step, Step{dir.path(), 10 + i, 50}));
  pool.close();
  bounded(kLong, "join()", [&] { pool.join(); });
  EXPECT_TRUE(mapped.ready()) << "join() returned before a map finished";
  for (auto& r : applied) EXPECT_TRUE(r.ready()) << "join() returned before a task finished";
  for (int i = 0; i < 14; ++i) EXPECT_TRUE(file_exists(dir.file("done-" + std::to_string(i))));
  EXPECT_EQ(mapped.get(kPrompt).size(), 10u);
}

// README: an imap stream that still has unread input when the pool is joined yields
// the results of the tasks it had already submitted, then raises PoolStateError where
// it would have to read more input.
TEST(Notes, ImapWithUnreadInputYieldsWhatItSubmittedThenPoolStateErrorAfterJoin) {
  mqpool::Pool pool(2);
  std::int64_t inputs_read = 0;  // client side: the stream reads the input in this process
  auto endless = std::views::iota(std::int64_t{0}) | std::views::transform([&](std::int64_t i) {
                   ++inputs_read;
                   return Fate{"", 0, kSigkill, i};
                 });
  auto stream = pool.imap(fated, endless);
  for (std::int64_t i = 0; i < 3; ++i)
    ASSERT_EQ(bounded(kLong, "next()", [&] { return stream.next(kLong); }), std::optional(i));
  pool.close();
  bounded(kLong, "join()", [&] { pool.join(); });
  const std::int64_t submitted = inputs_read;
  ASSERT_GT(submitted, 3);
  std::int64_t next_value = 3;
  bool raised = false;
  std::string other;
  bounded(kLong, "reads after join()", [&] {
    while (!raised && other.empty() && next_value <= submitted) {
      try {
        const auto v = stream.next(kPrompt);
        if (!v)
          other = "the end of the stream";
        else if (*v != next_value)
          other =
              "value " + std::to_string(*v) + " where " + std::to_string(next_value) + " was due";
        else
          ++next_value;
      } catch (const mqpool::PoolStateError&) {
        raised = true;
      } catch (const std::exception& e) {
        other = e.what();
      }
    }
  });
  EXPECT_TRUE(raised) << "no PoolStateError; instead: "
                      << (other.empty() ? "more results than tasks submitted" : other);
  EXPECT_EQ(next_value, submitted)
      << "PoolStateError before every submitted task's result was read";
  EXPECT_EQ(inputs_read, submitted) << "the stream read input after join()";
}

}  // namespace
}  // namespace ftest
