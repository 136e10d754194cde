// "prefix-arc": prefix safety (never a victim with a resident child), one-touch blocks leave before
// reused ones, ghost hits promote, and the bookkeeping stays consistent.
#include <optional>
#include <set>

#include <gtest/gtest.h>

#include "tiers/eviction_policy.h"

namespace kvstash::tiers {
namespace {

BlockKey K(uint64_t i) { return BlockKey::FromParts(7, i); }
const auto kAll = [](const BlockKey&) { return true; };

TEST(PrefixArcPolicyTest, FactoryAndName) {
  auto p = MakeEvictionPolicy("prefix-arc");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->name(), "prefix-arc");
}

TEST(PrefixArcPolicyTest, EvictsChainsFromTheTail) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnInsert(K(2), K(1), 1);
  p->OnInsert(K(3), K(2), 1);
  for (uint64_t want : {3, 2, 1}) {
    auto v = p->PickVictim(kAll);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, K(want));
    p->OnErase(*v);
  }
  EXPECT_FALSE(p->PickVictim(kAll).has_value());
  EXPECT_EQ(p->size(), 0u);
}

TEST(PrefixArcPolicyTest, OneTouchLeavesBeforeReused) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnAccess(K(1));  // reused: T2
  p->OnInsert(K(2), std::nullopt, 1);  // newer, but touched once: T1
  EXPECT_EQ(p->PickVictim(kAll), K(2));
}

TEST(PrefixArcPolicyTest, SkipsUnevictableAndFallsBackToTheOtherList) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnAccess(K(1));
  p->OnInsert(K(2), std::nullopt, 1);
  EXPECT_EQ(p->PickVictim([](const BlockKey& k) { return k != K(2); }), K(1));
  EXPECT_FALSE(p->PickVictim([](const BlockKey&) { return false; }).has_value());
}

TEST(PrefixArcPolicyTest, ReturningGhostIsTreatedAsReused) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnErase(K(1));                    // ghost in B1
  p->OnInsert(K(2), std::nullopt, 1);  // T1
  p->OnInsert(K(1), std::nullopt, 1);  // B1 hit: T2, and T1's target grows to 1
  p->OnInsert(K(3), std::nullopt, 1);
  p->OnInsert(K(4), std::nullopt, 1);  // T1 = {2, 3, 4} is over target: its coldest goes
  EXPECT_EQ(p->PickVictim(kAll), K(2));
  p->OnErase(K(2));
  p->OnErase(K(3));
  p->OnErase(K(4));
  EXPECT_EQ(p->PickVictim(kAll), K(1));
}

TEST(PrefixArcPolicyTest, ParentInsertedAfterChildIsNotALeaf) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(2), K(1), 1);
  p->OnInsert(K(1), std::nullopt, 1);
  EXPECT_EQ(p->PickVictim(kAll), K(2));
  p->OnErase(K(2));
  EXPECT_EQ(p->PickVictim(kAll), K(1));
}

// A randomised forest: every victim has no resident child, and size() matches.
TEST(PrefixArcPolicyTest, NeverPicksABlockWithAResidentChild) {
  auto p = MakePrefixArcPolicy();
  std::set<uint64_t> resident;
  uint64_t x = 12345;
  const auto next = [&] { return x = x * 6364136223846793005ULL + 1442695040888963407ULL; };
  for (int step = 0; step < 20000; ++step) {
    const uint64_t doc = (next() >> 33) % 40;
    const uint64_t len = 1 + (next() >> 33) % 6;
    for (uint64_t i = 0; i < len; ++i) {
      const uint64_t id = doc * 100 + i;
      if (resident.contains(id)) {
        p->OnAccess(K(id));
        continue;
      }
      while (resident.size() >= 50) {
        auto v = p->PickVictim(kAll);
        ASSERT_TRUE(v.has_value());
        const uint64_t vid = v->Low();
        EXPECT_FALSE(resident.contains(vid + 1) && (vid + 1) % 100 != 0) << vid;
        resident.erase(vid);
        p->OnErase(*v);
      }
      resident.insert(id);
      p->OnInsert(K(id), i == 0 ? std::nullopt : std::optional<BlockKey>(K(id - 1)), 1);
    }
    ASSERT_EQ(p->size(), resident.size());
  }
}

}  // namespace
}  // namespace kvstash::tiers
