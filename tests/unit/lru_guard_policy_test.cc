// The LRU guard ("prefix-arc", tiers/lru_guard_policy.h) and the victim orders it switches
// between (tiers/prefix_arc_policy.h): leaf-LRU order is the "prefix" policy's order over ARC's
// bookkeeping; the guard keeps ARC's order where ARC wins and takes leaf LRU's where LRU wins.
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <unordered_set>
#include <vector>

#include <gtest/gtest.h>

#include "common/checksum.h"
#include "tiers/dram_tier.h"
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
  auto lru = MakeEvictionPolicy(EvictionPolicyKind::kLru);
  const uint64_t g = Replay(guard, refs, 100);
  const uint64_t u = Replay(*unguarded, refs, 100);
  const uint64_t l = Replay(*lru, refs, 100);
  EXPECT_GT(u, l + 1000) << "the trace must favour ARC for this test to mean anything";
  EXPECT_EQ(guard.victim_order(), Order::kArc);
  EXPECT_GE(g, u - u / 50);  // within 2% of unguarded ARC
}

TEST(LruGuardPolicyTest, TakesLeafLruOrderWhereLruWins) {
  const auto refs = Conversations();
  LruGuardPolicy guard;
  auto unguarded = MakeUnguardedPrefixArcPolicy();
  auto lru = MakeEvictionPolicy(EvictionPolicyKind::kLru);
  auto leaf_lru = MakeEvictionPolicy(EvictionPolicyKind::kPrefix);
  const size_t capacity = 400;
  const uint64_t g = Replay(guard, refs, capacity);
  const uint64_t u = Replay(*unguarded, refs, capacity);
  const uint64_t l = Replay(*lru, refs, capacity);
  const uint64_t leaf = Replay(*leaf_lru, refs, capacity);
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

TEST(PrefixArcVictimOrderTest, LruTakesTheColdestBlockParentsIncluded) {
  PrefixArcPolicy p;
  p.TrackAllBlocks();
  p.OnInsert(K(1), std::nullopt, 1);
  p.OnInsert(K(2), K(1), 1);  // 1 now has a resident child
  p.OnInsert(K(3), std::nullopt, 1);
  p.set_victim_order(Order::kLru);
  EXPECT_EQ(p.PickVictim(kAll), K(1));  // the coldest, though not a leaf
  p.OnErase(K(1));
  EXPECT_EQ(p.PickVictim(kAll), K(2));  // its child, waiting for it, leaves in its own turn
  p.OnAccess(K(2));
  EXPECT_EQ(p.PickVictim(kAll), K(3));
  p.set_victim_order(Order::kLeafLru);
  EXPECT_EQ(p.PickVictim(kAll), K(3));
}

TEST(LruGuardPolicyTest, AboveAnSsdStartsInLruOrderAndCountsSsdHits) {
  // One DRAM block above an SSD of two 2-block segments: blocks 1, 2, 1, 2, ... — each evicted
  // block is on the SSD when it comes back. Both shadows hit every return from the SSD, so
  // neither order leads, and the guard stays where it starts above an SSD: LRU's order.
  LruGuardPolicy guard;
  guard.SetLowerTier({4, 2, 1, 0.5});
  EXPECT_EQ(guard.victim_order(), Order::kLru);
  std::vector<std::vector<uint64_t>> refs;
  for (int i = 0; i < 200; ++i) refs.push_back({static_cast<uint64_t>(1 + i % 2)});
  Replay(guard, refs, 1);
  EXPECT_EQ(guard.victim_order(), Order::kLru);
  EXPECT_EQ(guard.switches(), 0u);
}

TEST(LruGuardPolicyTest, DramTierTellsThePolicyTheSsdBelow) {
  // 16 blocks of 4 KiB; a 16th block evicts one. A chain 1 -> 2 goes first, then singles. Above
  // an SSD the guard starts in LRU's order and evicts the coldest block, chain head 1; without
  // one it starts in ARC's, which takes leaves only, so 2 leaves first.
  for (const bool ssd_below : {true, false}) {
    SCOPED_TRACE(ssd_below);
    DramTierOptions o;
    o.capacity_bytes = 64 * 1024;
    o.high_watermark = 0.95;
    o.low_watermark = 0.94;
    o.max_block_bytes = 4096;
    o.huge_pages = HugePages::kOff;
    o.index_shards = 2;
    if (ssd_below) o.lower_tier = EvictionPolicy::LowerTier{1 << 20, 64 * 1024, 1, 0.5};
    auto tier = DramTier::Create(o);
    ASSERT_TRUE(tier.ok()) << tier.status().ToString();
    const std::vector<std::byte> bytes(4096, std::byte{7});
    const auto put = [&](uint64_t i, std::optional<BlockKey> parent) {
      auto r = (*tier)->Reserve(K(i), bytes.size(), parent, 10'000);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      std::memcpy(r->data, bytes.data(), bytes.size());
      ASSERT_TRUE((*tier)->Commit(r->id, BlockChecksum(bytes.data(), bytes.size()), false).ok());
    };
    put(1, std::nullopt);
    put(2, K(1));
    for (uint64_t i = 3; i <= 16; ++i) put(i, std::nullopt);
    ASSERT_GE((*tier)->Counters().evicted_capacity, 1u);
    EXPECT_EQ((*tier)->Peek(K(1)).has_value(), !ssd_below);
    EXPECT_EQ((*tier)->Peek(K(2)).has_value(), ssd_below);
  }
}

TEST(LruGuardPolicyTest, NameAndFactory) {
  auto p = MakeEvictionPolicy(EvictionPolicyKind::kPrefixArc);
  EXPECT_EQ(p->name(), "prefix-arc");
  EXPECT_NE(dynamic_cast<LruGuardPolicy*>(p.get()), nullptr);
  auto u = MakeEvictionPolicy(EvictionPolicyKind::kPrefixArcUnguarded);
  EXPECT_EQ(u->name(), "prefix-arc-unguarded");
}

}  // namespace
}  // namespace kvstash::tiers
