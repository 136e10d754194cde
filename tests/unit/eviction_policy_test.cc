// Eviction policies: LRU order and the prefix-aware invariant (a parent is never picked while a
// resident child exists), including parents that are absent or arrive after their children; and
// every policy under parent links that are not a forest (cycles, self links, re-puts with new
// parents): every block still leaves.
#include "tiers/eviction_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "tiers/parent_walk.h"

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

TEST(EvictionPolicyFactoryTest, EveryKindBuildsThePolicyOfItsName) {
  ASSERT_EQ(std::size(kEvictionPolicyNames), 4u);
  for (const auto& [kind, name] : kEvictionPolicyNames) {
    EXPECT_EQ(Name(kind), name);
    EXPECT_EQ(MakeEvictionPolicy(kind)->name(), name);
    auto parsed = ParseEvictionPolicy(name);
    ASSERT_TRUE(parsed.ok()) << name;
    EXPECT_EQ(*parsed, kind);
  }
}

// Names are parsed only at the edges (settings, kvstash-sim's flags); an unknown one is refused
// with every valid name in the message.
TEST(EvictionPolicyFactoryTest, ParseRefusesUnknownNamesListingTheValidOnes) {
  for (const char* bad : {"fifo", "", "LRU", "prefix-arc "}) {
    auto r = ParseEvictionPolicy(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(r.status().message(), "eviction policy must be lru, prefix, prefix-arc or prefix-arc-unguarded, not '" +
                                        std::string(bad) + "'");
  }
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

// ---- Any parent graph (issue 13) ----------------------------------------------------------
// Clients name any block as a parent, so the links need not form a forest. A(parent B) then
// B(parent A) once left both blocks with a resident child and neither a leaf: "prefix" and
// "prefix-arc" never picked them again, and a cache full of such pairs refused every put.

class AnyParentGraphTest : public ::testing::TestWithParam<EvictionPolicyKind> {
 protected:
  void SetUp() override { p_ = MakeEvictionPolicy(GetParam()); }
  bool prefix_order() const { return GetParam() != EvictionPolicyKind::kLru; }

  // Picks and erases until PickVictim answers nothing (at most `limit` times), returning the order.
  std::vector<BlockKey> DrainAtMost(size_t limit) {
    std::vector<BlockKey> order;
    while (order.size() < limit) {
      std::optional<BlockKey> v = p_->PickVictim(kAll);
      if (!v) break;
      order.push_back(*v);
      p_->OnErase(*v);
    }
    return order;
  }

  // Every one of the n tracked blocks leaves, each once.
  void ExpectEveryBlockLeaves(size_t n) {
    ASSERT_EQ(p_->size(), n);
    const std::vector<BlockKey> order = DrainAtMost(2 * n + 1);
    EXPECT_EQ(order.size(), n);
    const std::unordered_set<BlockKey, BlockKeyHash> distinct(order.begin(), order.end());
    EXPECT_EQ(distinct.size(), order.size());
    EXPECT_EQ(p_->size(), 0u);
  }

  std::unique_ptr<EvictionPolicy> p_;
};

TEST_P(AnyParentGraphTest, TwoCycle) {
  p_->OnInsert(K(1), K(2), 1);  // B absent: A waits for it
  p_->OnInsert(K(2), K(1), 1);  // closes the cycle
  EXPECT_TRUE(p_->PickVictim(kAll).has_value());
  ExpectEveryBlockLeaves(2);
}

TEST_P(AnyParentGraphTest, ManyTwoCycles) {
  for (uint64_t i = 0; i < 31; ++i) {
    p_->OnInsert(K(100 + i), K(200 + i), 1);
    p_->OnInsert(K(200 + i), K(100 + i), 1);
  }
  ExpectEveryBlockLeaves(62);
}

TEST_P(AnyParentGraphTest, ThreeCycle) {
  p_->OnInsert(K(1), K(2), 1);
  p_->OnInsert(K(2), K(3), 1);
  p_->OnInsert(K(3), K(1), 1);
  EXPECT_TRUE(p_->PickVictim(kAll).has_value());
  ExpectEveryBlockLeaves(3);
}

TEST_P(AnyParentGraphTest, SelfLoops) {
  p_->OnInsert(K(1), K(1), 1);
  p_->OnInsert(K(2), K(1), 1);
  p_->OnInsert(K(2), K(2), 1);  // re-put as its own parent: drops its link to 1
  ExpectEveryBlockLeaves(2);
}

// A chain whose root end runs into a 2-cycle: 5 -> 4 -> 3 -> 1 <-> 2. The chain still leaves from
// its tail, then the blocks of the cycle.
TEST_P(AnyParentGraphTest, CycleHangingOffAChain) {
  p_->OnInsert(K(1), K(2), 1);
  p_->OnInsert(K(2), K(1), 1);  // the link that closes the cycle is the one not kept
  p_->OnInsert(K(3), K(1), 1);
  p_->OnInsert(K(4), K(3), 1);
  p_->OnInsert(K(5), K(4), 1);
  if (prefix_order()) {
    EXPECT_EQ(DrainAtMost(10), (std::vector<BlockKey>{K(5), K(4), K(3), K(1), K(2)}));
  } else {
    ExpectEveryBlockLeaves(5);
  }
  EXPECT_EQ(p_->size(), 0u);
}

// 1 <- 2 <- 3; 1 leaves out of order (an admin Remove) and comes back as the child of 3.
TEST_P(AnyParentGraphTest, CycleClosedByAReput) {
  p_->OnInsert(K(1), std::nullopt, 1);
  p_->OnInsert(K(2), K(1), 1);
  p_->OnInsert(K(3), K(2), 1);
  p_->OnErase(K(1));
  p_->OnInsert(K(1), K(3), 1);
  if (prefix_order()) {
    EXPECT_EQ(DrainAtMost(10), (std::vector<BlockKey>{K(3), K(2), K(1)}));
  } else {
    ExpectEveryBlockLeaves(3);
  }
  EXPECT_EQ(p_->size(), 0u);
}

// Re-inserting resident keys with new parents (as a tier does when a key is put again) rebuilds
// cycles over and over; the counts of resident children must stay right through all of it.
TEST_P(AnyParentGraphTest, ReinsertsWithNewParents) {
  for (uint64_t round = 0; round < 5; ++round) {
    for (uint64_t i = 0; i < 6; ++i) p_->OnInsert(K(i), K((i + 1 + round) % 6), 1);
  }
  p_->OnErase(K(2));
  p_->OnInsert(K(2), K(4), 1);
  ExpectEveryBlockLeaves(6);
}

// A cycle longer than the walk kMaxParentWalk: the policy cannot show the closing link is safe,
// so it keeps the link out, and the rest still leaves from the tail.
TEST_P(AnyParentGraphTest, CycleLongerThanTheWalk) {
  const uint64_t n = kMaxParentWalk + 44;
  for (uint64_t i = 0; i < n; ++i) p_->OnInsert(K(i), K((i + 1) % n), 1);
  if (prefix_order()) {
    EXPECT_EQ(p_->PickVictim(kAll), K(0));  // 0's only child, n-1, is not linked
  }
  ExpectEveryBlockLeaves(n);
}

// Random parent links over a small key space (self links, cycles of every length, re-puts,
// removals, reads): whenever a block is tracked, PickVictim finds one, and everything leaves.
TEST_P(AnyParentGraphTest, RandomGraphsAlwaysHaveAVictim) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SetUp();
    std::mt19937_64 rng(seed);
    std::unordered_set<BlockKey, BlockKeyHash> resident;
    for (int step = 0; step < 3000; ++step) {
      const BlockKey key = K(rng() % 40);
      switch (rng() % 8) {
        case 0:
          p_->OnErase(key);
          resident.erase(key);
          break;
        case 1:
          p_->OnAccess(key);
          break;
        case 2: {
          std::optional<BlockKey> v = p_->PickVictim(kAll);
          ASSERT_TRUE(v.has_value() || resident.empty()) << "seed " << seed << " step " << step;
          if (v) {
            ASSERT_TRUE(resident.contains(*v));
            p_->OnErase(*v);
            resident.erase(*v);
          }
          break;
        }
        default: {
          const uint64_t roll = rng() % 10;
          const std::optional<BlockKey> parent =
              roll == 0 ? std::nullopt : roll == 1 ? std::optional<BlockKey>(key) : std::optional<BlockKey>(K(rng() % 40));
          p_->OnInsert(key, parent, 1);
          resident.insert(key);
        }
      }
      ASSERT_EQ(p_->size(), resident.size()) << "seed " << seed << " step " << step;
    }
    ExpectEveryBlockLeaves(resident.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, AnyParentGraphTest,
                         ::testing::Values(EvictionPolicyKind::kLru, EvictionPolicyKind::kPrefix,
                                           EvictionPolicyKind::kPrefixArc),
                         [](const ::testing::TestParamInfo<EvictionPolicyKind>& info) {
                           std::string name(Name(info.param));
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace kvstash::tiers
