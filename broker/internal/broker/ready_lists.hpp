// Intrusive FIFO lists of nodes, one list per bucket: BrokerCore's executors with credit
// left, by TASKs in flight (docs/ARCHITECTURE.md, "The broker"). Pure data structure:
// which bucket a node belongs on is the caller's policy. A node is on at most one list,
// and every move is O(1); only pop_front walks the buckets (a handful: one per credit).
#pragma once

#include <cstddef>
#include <vector>

namespace mqpool::broker {

// The links a node carries (a type derives from it to go on the lists). The lists hold
// pointers to it: a node must not move while it is on one (unordered_map nodes do not).
struct ReadyLink {
  ReadyLink* prev = nullptr;
  ReadyLink* next = nullptr;
  int bucket = -1;  // the list it is on; < 0: on none
};

class ReadyLists {
 public:
  // At least `buckets` lists; the nodes already on them stay where they are.
  void ensure(std::size_t buckets) {
    if (lists_.size() < buckets) lists_.resize(buckets);
  }
  std::size_t buckets() const { return lists_.size(); }

  // Moves `n` to the back of list `bucket` (< buckets()), off any list it was on.
  void push_back(ReadyLink& n, std::size_t bucket) {
    remove(n);
    List& l = lists_[bucket];
    n.bucket = static_cast<int>(bucket);
    n.prev = l.tail;
    (l.tail != nullptr ? l.tail->next : l.head) = &n;
    l.tail = &n;
  }

  // Takes `n` off its list; nothing if it is on none.
  void remove(ReadyLink& n) {
    if (n.bucket < 0) return;
    List& l = lists_[static_cast<std::size_t>(n.bucket)];
    (n.prev != nullptr ? n.prev->next : l.head) = n.next;
    (n.next != nullptr ? n.next->prev : l.tail) = n.prev;
    n.prev = n.next = nullptr;
    n.bucket = -1;
  }

  // Takes the oldest node of the lowest non-empty bucket off its list; nullptr if all
  // are empty.
  ReadyLink* pop_front() {
    for (List& l : lists_) {
      if (l.head != nullptr) {
        ReadyLink* n = l.head;
        remove(*n);
        return n;
      }
    }
    return nullptr;
  }

  bool empty() const {
    for (const List& l : lists_)
      if (l.head != nullptr) return false;
    return true;
  }

 private:
  struct List {
    ReadyLink* head = nullptr;
    ReadyLink* tail = nullptr;
  };
  std::vector<List> lists_;
};

}  // namespace mqpool::broker
