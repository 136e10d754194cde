// "prefix-arc": prefix safety (never a victim with a resident child), one-touch blocks leave before
// reused ones, reuse advice moves not-yet-reused blocks, ghost hits promote, a run of ghost hits
// moves ARC's target once, ghost memory is bounded, and the bookkeeping stays consistent.
#include <optional>
#include <set>

#include <gtest/gtest.h>

#include "tiers/eviction_policy.h"

namespace kvstash::tiers {
namespace {

BlockKey K(uint64_t i) { return BlockKey::FromParts(7, i); }
const auto kAll = [](const BlockKey&) { return true; };

TEST(PrefixArcPolicyTest, FactoryAndName) {
  auto p = MakeEvictionPolicy(EvictionPolicyKind::kPrefixArc);
  EXPECT_EQ(p->name(), "prefix-arc");
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

TEST(PrefixArcPolicyTest, UnlikelyAdviceLeavesFirst) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnAccess(K(1));                   // T2
  p->OnInsert(K(2), std::nullopt, 1);  // T1, colder than 3
  p->OnInsert(K(3), std::nullopt, 1);
  p->OnAdvise(K(3), ReuseAdvice::kUnlikely);
  EXPECT_EQ(p->PickVictim(kAll), K(3));  // before T1's coldest and before T2
  p->OnErase(K(3));
  EXPECT_EQ(p->PickVictim(kAll), K(2));
  // Unevictable cold blocks are skipped like any other.
  p->OnAdvise(K(2), ReuseAdvice::kUnlikely);
  EXPECT_EQ(p->PickVictim([](const BlockKey& k) { return k != K(2); }), K(1));
}

TEST(PrefixArcPolicyTest, LikelyAdviceKeepsLikeReused) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnAdvise(K(1), ReuseAdvice::kLikely);  // T2, though touched once
  p->OnInsert(K(2), std::nullopt, 1);       // T1
  EXPECT_EQ(p->PickVictim(kAll), K(2));
  // Likely also lifts a block advised unlikely before.
  p->OnAdvise(K(2), ReuseAdvice::kUnlikely);
  p->OnAdvise(K(2), ReuseAdvice::kLikely);
  p->OnInsert(K(3), std::nullopt, 1);  // T1
  EXPECT_EQ(p->PickVictim(kAll), K(3));
}

TEST(PrefixArcPolicyTest, ReuseOutranksAdviceAndUnknownKeysAreIgnored) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnAccess(K(1));                          // reused: T2
  p->OnAdvise(K(1), ReuseAdvice::kUnlikely);  // ignored
  p->OnInsert(K(2), std::nullopt, 1);         // T1
  EXPECT_EQ(p->PickVictim(kAll), K(2));
  p->OnAdvise(K(99), ReuseAdvice::kUnlikely);  // not resident
  EXPECT_EQ(p->size(), 2u);
  // A cold block that is read is reused: it leaves T2's order, not first.
  p->OnAdvise(K(2), ReuseAdvice::kUnlikely);
  p->OnAccess(K(2));
  p->OnInsert(K(3), std::nullopt, 1);
  EXPECT_EQ(p->PickVictim(kAll), K(3));
}

TEST(PrefixArcPolicyTest, AdviceKeepsChainsTailFirst) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnInsert(K(2), K(1), 1);
  p->OnInsert(K(3), K(2), 1);
  p->OnAdvise(K(1), ReuseAdvice::kUnlikely);  // the head: cold, but not a leaf
  p->OnAdvise(K(3), ReuseAdvice::kLikely);
  for (uint64_t want : {3, 2, 1}) {  // the only leaf each time, whatever the advice
    EXPECT_EQ(p->PickVictim(kAll), K(want));
    p->OnErase(K(want));
  }
  EXPECT_EQ(p->size(), 0u);
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

// A chain re-put from its root after eviction is a run of B1 hits: T1's target p grows once for
// the run (to 1), not once per block (to 3).
TEST(PrefixArcPolicyTest, GhostRunMovesTheTargetOnce) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(10), std::nullopt, 1);
  p->OnAccess(K(10));  // T2
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnInsert(K(2), K(1), 1);
  p->OnInsert(K(3), K(2), 1);
  for (uint64_t id : {3, 2, 1}) p->OnErase(K(id));  // B1 = {3, 2, 1}
  p->OnInsert(K(1), std::nullopt, 1);  // starts the run: p = 1
  p->OnInsert(K(2), K(1), 1);          // parent just inserted: same run, p stays
  p->OnInsert(K(3), K(2), 1);
  p->OnInsert(K(20), std::nullopt, 1);
  p->OnInsert(K(21), std::nullopt, 1);  // |T1| = 2 > p = 1: T1's coldest goes (with p = 3, T2's)
  EXPECT_EQ(p->PickVictim(kAll), K(20));
}

// A ghost whose resident parent was read (a lookup hit) extends a resident prefix: it moves p.
TEST(PrefixArcPolicyTest, GhostUnderAReadParentMovesTheTarget) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(10), std::nullopt, 1);
  p->OnAccess(K(10));
  p->OnInsert(K(1), std::nullopt, 1);
  p->OnInsert(K(2), K(1), 1);
  p->OnInsert(K(3), K(2), 1);
  p->OnErase(K(3));
  p->OnErase(K(2));  // B1 = {3, 2}; 1 stays resident
  p->OnAccess(K(1));           // the lookup hits 1
  p->OnInsert(K(2), K(1), 1);  // B1 hit after a read parent: p = 1
  p->OnInsert(K(3), K(2), 1);  // same run
  p->OnInsert(K(20), std::nullopt, 1);  // |T1| = 1 <= p: T2's coldest leaf goes
  EXPECT_EQ(p->PickVictim(kAll), K(10));
}

// Ghost lists are bounded (3x the resident keys, at least 64): a key evicted before 200 others
// while the tier holds one block is forgotten and comes back as a first touch (T1).
TEST(PrefixArcPolicyTest, GhostMemoryIsBounded) {
  for (const bool flood : {false, true}) {
    auto p = MakePrefixArcPolicy();
    p->OnInsert(K(1), std::nullopt, 1);
    p->OnErase(K(1));
    if (flood) {
      for (uint64_t id = 100; id < 300; ++id) {
        p->OnInsert(K(id), std::nullopt, 1);
        p->OnErase(K(id));
      }
    }
    p->OnInsert(K(2), std::nullopt, 1);
    p->OnInsert(K(1), std::nullopt, 1);
    // Remembered: 1 is in T2 and T1 = {2} is within p = 1, so 1 goes. Forgotten: T1 = {2, 1}.
    EXPECT_EQ(p->PickVictim(kAll), flood ? K(2) : K(1)) << flood;
    EXPECT_EQ(p->size(), 2u);
  }
}

TEST(PrefixArcPolicyTest, ParentInsertedAfterChildIsNotALeaf) {
  auto p = MakePrefixArcPolicy();
  p->OnInsert(K(2), K(1), 1);
  p->OnInsert(K(1), std::nullopt, 1);
  EXPECT_EQ(p->PickVictim(kAll), K(2));
  p->OnErase(K(2));
  EXPECT_EQ(p->PickVictim(kAll), K(1));
}

// A randomised forest with random advice: every victim has no resident child, and size() matches.
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
      const uint64_t advice = (next() >> 33) % 4;
      if (advice < 2) p->OnAdvise(K(id), advice == 0 ? ReuseAdvice::kLikely : ReuseAdvice::kUnlikely);
    }
    ASSERT_EQ(p->size(), resident.size());
  }
}

}  // namespace
}  // namespace kvstash::tiers
