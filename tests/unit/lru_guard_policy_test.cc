// The LRU guard ("prefix-arc", tiers/lru_guard_policy.h) and the victim orders it switches
// between (tiers/prefix_arc_policy.h): leaf-LRU order is the "prefix" policy's order over ARC's
// bookkeeping; the guard keeps ARC's order where ARC wins and takes leaf LRU's where LRU wins.
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <unordered_set>
#include <vector>

#include <gtest/gtest.h>

#include "tiers/eviction_policy.h"
#include "tiers/lru_guard_policy.h"
#include "tiers/prefix_arc_policy.h"

namespace kvstash::tiers {
namespace {

BlockKey K(uint64_t i) { return BlockKey::FromParts(9, i); }
const auto kAll = [](const BlockKey&) { return true; };
using Order = PrefixArcPolicy::VictimOrder;

TEST(PrefixArcVictimOrderTest, LeafLruTakesTheColdestLeafOfBothLists) {
  PrefixArcPolicy p;
  p.OnInsert(K(1), std::nullopt, 1);
  p.OnAccess(K(1));                   // T2, tick 2
  p.OnInsert(K(2), std::nullopt, 1);  // T1, tick 3
  EXPECT_EQ(p.PickVictim(kAll), K(2));  // ARC: one-touch first
  p.set_victim_order(Order::kLeafLru);
  EXPECT_EQ(p.PickVictim(kAll), K(1));  // leaf LRU: the least recently used
  EXPECT_EQ(p.PickVictim([](const BlockKey& k) { return k != K(1); }), K(2));
}

TEST(PrefixArcVictimOrderTest, LeafLruKeepsChainsTailFirstAndUnlikelyFirst) {
  PrefixArcPolicy p;
  p.set_victim_order(Order::kLeafLru);
  p.OnInsert(K(1), std::nullopt, 1);
  p.OnInsert(K(2), K(1), 1);
  p.OnInsert(K(3), std::nullopt, 1);
  p.OnAdvise(K(3), ReuseAdvice::kUnlikely);  // newest, but advised unlikely: leaves first
  for (uint64_t want : {3, 2, 1}) {
    ASSERT_EQ(p.PickVictim(kAll), K(want));
    p.OnErase(K(want));
  }
  EXPECT_EQ(p.size(), 0u);
  EXPECT_EQ(p.resident_bytes(), 0u);
}

// Replays `refs` (each a chain of keys, head first) through `policy` on a cache of `capacity`
// blocks, as kvstash-sim cache does, and returns the prefix-hit blocks.
uint64_t Replay(EvictionPolicy& policy, const std::vector<std::vector<uint64_t>>& refs, size_t capacity) {
  std::unordered_set<uint64_t> resident;
  uint64_t hits = 0;
  for (const auto& chain : refs) {
    bool prefix = true;
    std::optional<BlockKey> parent;
    for (uint64_t id : chain) {
      if (resident.contains(id)) {
        hits += prefix ? 1 : 0;
        policy.OnAccess(K(id));
      } else {
        prefix = false;
        while (resident.size() >= capacity) {
          const std::optional<BlockKey> v = policy.PickVictim(kAll);
          if (!v) return hits;
          resident.erase(v->Low());
          policy.OnErase(*v);
        }
        resident.insert(id);
        policy.OnInsert(K(id), parent, 1);
      }
      parent = K(id);
    }
  }
  return hits;
}

// A hot set of 40 one-block documents read over and over, between scans of one-touch blocks:
// LRU lets each scan flush the hot set; ARC keeps it in T2.
std::vector<std::vector<uint64_t>> HotSetAndScans() {
  std::vector<std::vector<uint64_t>> refs;
  uint64_t next = 1000;
  for (int round = 0; round < 60; ++round) {
    for (uint64_t h = 0; h < 40; ++h) refs.push_back({h});
    for (int s = 0; s < 80; ++s) refs.push_back({next++});
  }
  return refs;
}

// Conversations: each turn reads its whole context and appends two blocks; 40 sessions are live,
// a turn goes to one of them at random (seeded), and a session ends after 8 turns (a new one takes
// its place). Every block of a context reaches T2 on the next turn, so T2 fills with ended
// conversations while ARC's one-touch list — each live session's newest blocks — is squeezed: the
// pattern that made prefix-arc lose to LRU (docs/EVICTION.md).
std::vector<std::vector<uint64_t>> Conversations() {
  std::vector<std::vector<uint64_t>> refs;
  std::vector<std::vector<uint64_t>> live(40);
  std::vector<int> turns(live.size(), 0);
  std::mt19937 rng(1);
  uint64_t next = 0;
  for (int step = 0; step < 6000; ++step) {
    const size_t s = rng() % live.size();
    if (turns[s] == 8) {
      live[s].clear();
      turns[s] = 0;
    }
    live[s].push_back(next++);
    live[s].push_back(next++);
    ++turns[s];
    refs.push_back(live[s]);
  }
  return refs;
}

TEST(LruGuardPolicyTest, KeepsArcOrderWhereArcWins) {
  const auto refs = HotSetAndScans();
  LruGuardPolicy guard;
  auto unguarded = MakeUnguardedPrefixArcPolicy();
  auto lru = MakeEvictionPolicy("lru");
  ASSERT_TRUE(lru.ok());
  const uint64_t g = Replay(guard, refs, 100);
  const uint64_t u = Replay(*unguarded, refs, 100);
  const uint64_t l = Replay(**lru, refs, 100);
  EXPECT_GT(u, l + 1000) << "the trace must favour ARC for this test to mean anything";
  EXPECT_EQ(guard.victim_order(), Order::kArc);
  EXPECT_GE(g, u - u / 50);  // within 2% of unguarded ARC
}

TEST(LruGuardPolicyTest, TakesLeafLruOrderWhereLruWins) {
  const auto refs = Conversations();
  LruGuardPolicy guard;
  auto unguarded = MakeUnguardedPrefixArcPolicy();
  auto lru = MakeEvictionPolicy("lru");
  auto leaf_lru = MakeEvictionPolicy("prefix");
  ASSERT_TRUE(lru.ok() && leaf_lru.ok());
  const size_t capacity = 400;
  const uint64_t g = Replay(guard, refs, capacity);
  const uint64_t u = Replay(*unguarded, refs, capacity);
  const uint64_t l = Replay(**lru, refs, capacity);
  const uint64_t leaf = Replay(**leaf_lru, refs, capacity);
  EXPECT_LT(u + u / 50, l) << "the trace must favour LRU for this test to mean anything";
  EXPECT_EQ(guard.victim_order(), Order::kLeafLru);
  EXPECT_GE(guard.switches(), 1u);
  EXPECT_GE(g, l);
  EXPECT_GE(g + leaf / 500, leaf);  // within 0.2% of leaf LRU, whose order it took
}

TEST(LruGuardPolicyTest, ReturnsToArcOrderWhenArcLeadsAgain) {
  // Conversations first (the guard takes leaf-LRU order), then hot sets between scans on new keys
  // (ARC leads again): the decayed lead turns and the guard goes back to ARC's order.
  std::vector<std::vector<uint64_t>> refs = Conversations();
  for (auto chain : HotSetAndScans()) {
    for (uint64_t& id : chain) id += 1'000'000;
    refs.push_back(chain);
  }
  LruGuardPolicy guard;
  Replay(guard, refs, 100);
  EXPECT_GE(guard.switches(), 2u);
  EXPECT_EQ(guard.victim_order(), Order::kArc);
}

TEST(LruGuardPolicyTest, NameAndFactory) {
  auto p = MakeEvictionPolicy("prefix-arc");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->name(), "prefix-arc");
  EXPECT_NE(dynamic_cast<LruGuardPolicy*>(p->get()), nullptr);
  auto u = MakeEvictionPolicy("prefix-arc-unguarded");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ((*u)->name(), "prefix-arc-unguarded");
}

}  // namespace
}  // namespace kvstash::tiers
