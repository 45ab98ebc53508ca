// ReadyLists, the broker's intrusive lists of executors with credit by TASKs in flight:
// FIFO within a bucket, lowest bucket first, O(1) moves that never duplicate a node.
#include <gtest/gtest.h>

#include <vector>

#include "broker/ready_lists.hpp"

namespace {

using mqpool::broker::ReadyLink;
using mqpool::broker::ReadyLists;

struct Node : ReadyLink {
  int id = 0;
};

// Pops every node: their ids in the order the lists give them (the lists end empty).
// Stops at 100, so that lists broken into a cycle fail the test instead of hanging it.
std::vector<int> drain(ReadyLists& r) {
  std::vector<int> out;
  while (ReadyLink* n = r.pop_front()) {
    if (out.size() == 100) {
      ADD_FAILURE() << "more than 100 nodes popped: the lists hold a cycle";
      break;
    }
    EXPECT_EQ(n->bucket, -1) << "a popped node is on no list";
    EXPECT_EQ(n->prev, nullptr);
    EXPECT_EQ(n->next, nullptr);
    out.push_back(static_cast<Node*>(n)->id);
  }
  EXPECT_TRUE(r.empty());
  return out;
}

// Nodes with ids 0..n-1.
std::vector<Node> nodes(int n) {
  std::vector<Node> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)].id = i;
  return v;
}

TEST(ReadyLists, NewListsAreEmptyAndPopNothing) {
  ReadyLists r;
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.pop_front(), nullptr);
  r.ensure(3);
  EXPECT_EQ(r.buckets(), 3u);
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.pop_front(), nullptr);
}

TEST(ReadyLists, ABucketIsFirstInFirstOut) {
  ReadyLists r;
  r.ensure(1);
  auto n = nodes(4);
  for (int i : {2, 0, 3, 1}) r.push_back(n[static_cast<std::size_t>(i)], 0);
  EXPECT_FALSE(r.empty());
  EXPECT_EQ(n[3].bucket, 0);
  EXPECT_EQ(drain(r), (std::vector<int>{2, 0, 3, 1}));
}

TEST(ReadyLists, TheLowestNonEmptyBucketGoesFirst) {
  ReadyLists r;
  r.ensure(3);
  auto n = nodes(5);
  r.push_back(n[0], 2);
  r.push_back(n[1], 1);
  r.push_back(n[2], 2);
  r.push_back(n[3], 1);
  r.push_back(n[4], 2);
  EXPECT_EQ(n[0].bucket, 2);
  EXPECT_EQ(n[1].bucket, 1);
  EXPECT_EQ(drain(r), (std::vector<int>{1, 3, 0, 2, 4}));
}

TEST(ReadyLists, ANodePushedToALowerBucketLaterStillGoesFirst) {
  ReadyLists r;
  r.ensure(2);
  auto n = nodes(3);
  r.push_back(n[0], 1);
  r.push_back(n[1], 1);
  EXPECT_EQ(static_cast<Node*>(r.pop_front())->id, 0);
  r.push_back(n[2], 0);
  EXPECT_EQ(drain(r), (std::vector<int>{2, 1}));
}

TEST(ReadyLists, RemoveTakesTheHeadOff) {
  ReadyLists r;
  r.ensure(1);
  auto n = nodes(3);
  for (auto& x : n) r.push_back(x, 0);
  r.remove(n[0]);
  EXPECT_EQ(n[0].bucket, -1);
  EXPECT_EQ(n[0].prev, nullptr);
  EXPECT_EQ(n[0].next, nullptr);
  EXPECT_EQ(drain(r), (std::vector<int>{1, 2}));
}

TEST(ReadyLists, RemoveTakesAMiddleNodeOff) {
  ReadyLists r;
  r.ensure(1);
  auto n = nodes(3);
  for (auto& x : n) r.push_back(x, 0);
  r.remove(n[1]);
  EXPECT_EQ(n[1].bucket, -1);
  EXPECT_EQ(n[1].prev, nullptr);
  EXPECT_EQ(n[1].next, nullptr);
  EXPECT_EQ(n[0].next, &n[2]);
  EXPECT_EQ(n[2].prev, &n[0]);
  EXPECT_EQ(drain(r), (std::vector<int>{0, 2}));
}

TEST(ReadyLists, RemoveTakesTheTailOffAndANewNodeGoesBehindTheNewTail) {
  ReadyLists r;
  r.ensure(1);
  auto n = nodes(4);
  for (int i = 0; i < 3; ++i) r.push_back(n[static_cast<std::size_t>(i)], 0);
  r.remove(n[2]);
  EXPECT_EQ(n[2].bucket, -1);
  EXPECT_EQ(n[2].prev, nullptr);
  EXPECT_EQ(n[1].next, nullptr);
  r.push_back(n[3], 0);  // behind 1, where the tail is now
  EXPECT_EQ(drain(r), (std::vector<int>{0, 1, 3}));
}

TEST(ReadyLists, RemovingTheOnlyNodeEmptiesItsBucket) {
  ReadyLists r;
  r.ensure(2);
  auto n = nodes(3);
  r.push_back(n[0], 0);
  r.push_back(n[1], 1);
  r.remove(n[0]);
  EXPECT_EQ(n[0].bucket, -1);
  EXPECT_FALSE(r.empty());
  r.push_back(n[2], 0);  // bucket 0 was left with neither head nor tail
  EXPECT_EQ(drain(r), (std::vector<int>{2, 1}));
  r.push_back(n[0], 1);
  r.remove(n[0]);
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.pop_front(), nullptr);
}

TEST(ReadyLists, RemovingANodeOnNoListChangesNothing) {
  ReadyLists r;
  r.ensure(2);
  auto n = nodes(4);
  r.remove(n[3]);  // never pushed
  EXPECT_EQ(n[3].bucket, -1);
  EXPECT_TRUE(r.empty());
  r.push_back(n[0], 1);
  r.push_back(n[1], 1);
  r.push_back(n[2], 0);
  r.remove(n[3]);
  r.remove(n[2]);
  r.remove(n[2]);  // a second time: already off
  EXPECT_EQ(n[3].bucket, -1);
  EXPECT_EQ(drain(r), (std::vector<int>{0, 1}));
}

TEST(ReadyLists, PushingANodeAgainMovesItWithoutDuplicates) {
  ReadyLists r;
  r.ensure(3);
  auto n = nodes(4);
  for (int i = 0; i < 3; ++i) r.push_back(n[static_cast<std::size_t>(i)], 1);
  r.push_back(n[0], 1);  // same bucket: to its back
  EXPECT_EQ(n[0].bucket, 1);
  r.push_back(n[1], 2);  // another bucket: off the first
  EXPECT_EQ(n[1].bucket, 2);
  r.push_back(n[3], 0);
  r.push_back(n[3], 0);
  EXPECT_EQ(drain(r), (std::vector<int>{3, 2, 0, 1}));
}

TEST(ReadyLists, GrowingTheBucketsKeepsTheirMembers) {
  ReadyLists r;
  r.ensure(2);
  auto n = nodes(5);
  r.push_back(n[0], 1);
  r.push_back(n[1], 0);
  r.push_back(n[2], 1);
  r.ensure(1);  // never shrinks
  EXPECT_EQ(r.buckets(), 2u);
  r.ensure(64);  // reallocates the lists
  EXPECT_EQ(r.buckets(), 64u);
  EXPECT_EQ(n[2].bucket, 1);
  r.push_back(n[3], 63);
  r.push_back(n[4], 1);
  r.remove(n[0]);  // the old head of bucket 1, found through the moved list
  EXPECT_EQ(drain(r), (std::vector<int>{1, 2, 4, 3}));
}

}  // namespace
