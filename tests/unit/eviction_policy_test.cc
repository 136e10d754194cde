// Eviction policies: LRU order and the prefix-aware invariant (a parent is never picked while a
// resident child exists), including parents that are absent or arrive after their children.
#include "tiers/eviction_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <unordered_set>
#include <vector>

namespace kvstash::tiers {
namespace {

BlockKey K(uint64_t n) { return BlockKey::FromParts(0, n); }
const auto kAll = [](const BlockKey&) { return true; };

// Picks and erases until empty, returning the order.
std::vector<BlockKey> Drain(EvictionPolicy& p) {
  std::vector<BlockKey> order;
  while (auto v = p.PickVictim(kAll)) {
    order.push_back(*v);
    p.OnErase(*v);
  }
  return order;
}

TEST(EvictionPolicyFactoryTest, ByName) {
  auto lru = MakeEvictionPolicy("lru");
  ASSERT_TRUE(lru.ok());
  EXPECT_EQ((*lru)->name(), "lru");
  auto prefix = MakeEvictionPolicy("prefix");
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ((*prefix)->name(), "prefix");
  auto bad = MakeEvictionPolicy("fifo");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(LruPolicyTest, EvictsLeastRecentlyUsedFirst) {
  auto p = MakeLruPolicy();
  for (uint64_t i = 1; i <= 4; ++i) p->OnInsert(K(i), std::nullopt, 100);
  p->OnAccess(K(1));
  p->OnAccess(K(3));
  p->OnAccess(K(99));  // unknown: ignored
  EXPECT_EQ(p->size(), 4u);
  EXPECT_EQ(Drain(*p), (std::vector<BlockKey>{K(2), K(4), K(1), K(3)}));
  EXPECT_EQ(p->size(), 0u);
}

TEST(LruPolicyTest, SkipsNonEvictableAndIgnoresUnknownErase) {
  auto p = MakeLruPolicy();
  for (uint64_t i = 1; i <= 3; ++i) p->OnInsert(K(i), std::nullopt, 100);
  p->OnErase(K(42));
  auto v = p->PickVictim([](const BlockKey& k) { return k != K(1); });
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, K(2));
  EXPECT_FALSE(p->PickVictim([](const BlockKey&) { return false; }));
  EXPECT_EQ(p->size(), 3u);  // PickVictim does not erase
}

TEST(PrefixAwarePolicyTest, EvictsChainFromTail) {
  auto p = MakePrefixAwarePolicy();
  // Chain 1 -> 2 -> 3, inserted in order; the root is the coldest but must go last.
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnInsert(K(2), K(1), 1);
  p->OnInsert(K(3), K(2), 1);
  EXPECT_EQ(Drain(*p), (std::vector<BlockKey>{K(3), K(2), K(1)}));
}

TEST(PrefixAwarePolicyTest, LeavesInLruOrderAndParentAfterLastChild) {
  auto p = MakePrefixAwarePolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnInsert(K(2), K(1), 1);  // two children of 1
  p->OnInsert(K(3), K(1), 1);
  p->OnInsert(K(10), std::nullopt, 1);  // unrelated single block
  p->OnAccess(K(2));                    // 3 is now the coldest leaf, then 10, then 2
  auto v = p->PickVictim(kAll);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, K(3));
  p->OnErase(K(3));
  v = p->PickVictim(kAll);
  EXPECT_EQ(*v, K(10));  // 1 still has child 2
  p->OnErase(K(10));
  v = p->PickVictim(kAll);
  // Parent 1 (older tick) became a leaf once 2 is gone; for now 2 is the only leaf.
  EXPECT_EQ(*v, K(2));
  p->OnErase(K(2));
  v = p->PickVictim(kAll);
  EXPECT_EQ(*v, K(1));
}

TEST(PrefixAwarePolicyTest, ParentNotResident) {
  auto p = MakePrefixAwarePolicy();
  p->OnInsert(K(2), K(1), 1);  // parent 1 never arrives
  p->OnInsert(K(3), K(2), 1);
  EXPECT_EQ(Drain(*p), (std::vector<BlockKey>{K(3), K(2)}));
}

TEST(PrefixAwarePolicyTest, ChildInsertedBeforeParent) {
  auto p = MakePrefixAwarePolicy();
  p->OnInsert(K(3), K(2), 1);
  p->OnInsert(K(2), K(1), 1);  // arrives after its child: must not be a candidate
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnAccess(K(3));  // make the tail the hottest: it must still go first
  EXPECT_EQ(Drain(*p), (std::vector<BlockKey>{K(3), K(2), K(1)}));
}

TEST(PrefixAwarePolicyTest, ChildUnderLeafParentRemovesParentFromCandidates) {
  auto p = MakePrefixAwarePolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  EXPECT_EQ(*p->PickVictim(kAll), K(1));
  p->OnInsert(K(2), K(1), 1);
  EXPECT_EQ(*p->PickVictim(kAll), K(2));
  EXPECT_FALSE(p->PickVictim([](const BlockKey& k) { return k == K(1); }));
}

TEST(PrefixAwarePolicyTest, OutOfOrderRemoveOfParentKeepsCounts) {
  auto p = MakePrefixAwarePolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnInsert(K(2), K(1), 1);
  p->OnErase(K(1));                    // admin removed the parent while its child is resident
  p->OnInsert(K(1), std::nullopt, 1);  // re-put: it has a resident child again
  EXPECT_EQ(Drain(*p), (std::vector<BlockKey>{K(2), K(1)}));
  EXPECT_EQ(p->size(), 0u);
}

TEST(PrefixAwarePolicyTest, SelfParentIsIgnored) {
  auto p = MakePrefixAwarePolicy();
  p->OnInsert(K(1), K(1), 1);
  EXPECT_EQ(Drain(*p), (std::vector<BlockKey>{K(1)}));
}

TEST(PrefixAwarePolicyTest, RandomForestNeverEvictsParentBeforeResidentChild) {
  std::mt19937_64 rng(11);
  auto p = MakePrefixAwarePolicy();
  std::unordered_set<BlockKey, BlockKeyHash> resident;
  std::vector<std::pair<BlockKey, BlockKey>> edges;  // (child, parent)
  // 50 chains of length 1..10 inserted in shuffled order, some roots left out.
  std::vector<std::pair<BlockKey, std::optional<BlockKey>>> inserts;
  uint64_t next = 1;
  for (int c = 0; c < 50; ++c) {
    const int len = 1 + static_cast<int>(rng() % 10);
    std::optional<BlockKey> parent;
    for (int i = 0; i < len; ++i) {
      BlockKey k = K(next++);
      if (parent) edges.emplace_back(k, *parent);
      inserts.emplace_back(k, parent);
      parent = k;
    }
  }
  std::shuffle(inserts.begin(), inserts.end(), rng);
  for (size_t i = 0; i < inserts.size(); ++i) {
    if (i % 17 == 0) continue;  // never resident
    p->OnInsert(inserts[i].first, inserts[i].second, 1);
    resident.insert(inserts[i].first);
  }
  for (int i = 0; i < 200; ++i) p->OnAccess(K(1 + rng() % (next - 1)));
  while (auto v = p->PickVictim(kAll)) {
    for (const auto& [child, parent] : edges) {
      if (parent == *v) {
        ASSERT_FALSE(resident.contains(child)) << "evicted a parent with a resident child";
      }
    }
    resident.erase(*v);
    p->OnErase(*v);
  }
  EXPECT_TRUE(resident.empty());
  EXPECT_EQ(p->size(), 0u);
}

}  // namespace
}  // namespace kvstash::tiers
