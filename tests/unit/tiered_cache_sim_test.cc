// kvstash-sim cache --ssd-blocks (scheduler/tiered_cache_sim.h) on hand-made traces with known
// answers: demotion to SSD, a system hit served from SSD, promotion, FIFO reclaim with hot
// re-append, and the references.
#include <vector>

#include <gtest/gtest.h>

#include "common/trace.h"
#include "scheduler/cache_sim.h"
#include "scheduler/tiered_cache_sim.h"

namespace kvstash::scheduler {
namespace {

using tiers::EvictionPolicyKind;

TraceRequest Req(std::vector<uint64_t> ids) {
  TraceRequest r;
  r.input_length = ids.size() * kTraceBlockTokens;
  r.hash_ids = std::move(ids);
  return r;
}

TieredSimOptions Tiers(uint64_t dram, uint64_t ssd, uint64_t segment) {
  TieredSimOptions o;
  o.dram_blocks = dram;
  o.ssd_blocks = ssd;
  o.segment_blocks = segment;
  return o;
}

TEST(TieredCacheSimTest, DramVictimIsServedFromSsdAndPromoted) {
  // One DRAM block. 1 is evicted by 2 and demoted; the third request finds 1 on SSD (a system
  // hit, not a DRAM one) and promotes it, demoting 2.
  std::vector<TraceRequest> t = {Req({1}), Req({2}), Req({1})};
  auto r = ReplayTiered(t, Tiers(1, 4, 2), EvictionPolicyKind::kLru);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->system.hit_tokens, kTraceBlockTokens);
  EXPECT_EQ(r->dram_hit_tokens, 0u);
  EXPECT_EQ(r->ssd_hit_tokens, kTraceBlockTokens);
  EXPECT_EQ(r->promotions, 1u);
  EXPECT_EQ(r->demotions, 2u);
  auto dram_only = ReplayPolicy(t, 1, EvictionPolicyKind::kLru);
  ASSERT_TRUE(dram_only.ok());
  EXPECT_EQ(dram_only->hit_tokens, 0u);
}

TEST(TieredCacheSimTest, PrefixStopsAtTheFirstBlockNeitherTierHolds) {
  // DRAM 1, SSD of two 1-block segments. Demotions: 1 (by 2), 2 (by 3), 3 (by 4); the third
  // reclaims 1's segment (1 was never read: dropped). The SSD holds 2 and 3, but the chain's head
  // is gone, so the last request hits nothing: a prefix needs its head.
  std::vector<TraceRequest> t = {Req({1, 2, 3}), Req({4}), Req({1, 2, 3})};
  auto r = ReplayTiered(t, Tiers(1, 2, 1), EvictionPolicyKind::kLru);
  ASSERT_TRUE(r.ok());
  EXPECT_GE(r->ssd_dropped, 1u);
  EXPECT_EQ(r->system.hit_tokens, 0u);
}

TEST(TieredCacheSimTest, ReclaimReappendsBlocksReadSinceWritten) {
  // DRAM 1, SSD of two 2-block segments. 1 is demoted (segment 0), read back from SSD (a hit:
  // hot), and not written again when DRAM evicts it (the SSD holds it). One-off blocks fill the
  // log until segment 0 is reclaimed: re-appended, 1 is a hit once more; without re-append
  // (reinsert_min_hits 0) it is dropped and missed.
  std::vector<TraceRequest> t = {Req({1}), Req({2}), Req({1}), Req({3}), Req({4}), Req({5}), Req({6}), Req({1})};
  TieredSimOptions hot = Tiers(1, 4, 2);
  TieredSimOptions cold = hot;
  cold.reinsert_min_hits = 0;
  auto with = ReplayTiered(t, hot, EvictionPolicyKind::kLru);
  auto without = ReplayTiered(t, cold, EvictionPolicyKind::kLru);
  ASSERT_TRUE(with.ok() && without.ok());
  EXPECT_EQ(with->ssd_reinserted, 1u);
  EXPECT_EQ(without->ssd_reinserted, 0u);
  EXPECT_EQ(with->system.hit_tokens, 2 * kTraceBlockTokens);
  EXPECT_EQ(without->system.hit_tokens, kTraceBlockTokens);
}

TEST(TieredCacheSimTest, SystemNeverBelowDramAloneAndReferencesBound) {
  std::vector<TraceRequest> t;
  for (uint64_t i = 0; i < 400; ++i) {
    const uint64_t doc = (i * 7919) % 37;
    t.push_back(Req({doc, 1000 + doc, 2000 + doc, 100000 + i}));
  }
  for (const EvictionPolicyKind policy :
       {EvictionPolicyKind::kLru, EvictionPolicyKind::kPrefix, EvictionPolicyKind::kPrefixArc}) {
    auto tiered = ReplayTiered(t, Tiers(20, 60, 10), policy);
    auto dram = ReplayPolicy(t, 20, policy);
    ASSERT_TRUE(tiered.ok() && dram.ok()) << Name(policy);
    EXPECT_GE(tiered->system.hit_tokens, dram->hit_tokens) << Name(policy);
    EXPECT_EQ(tiered->dram_hit_tokens + tiered->ssd_hit_tokens, tiered->system.hit_tokens) << Name(policy);
    EXPECT_LE(tiered->system.hit_tokens, ReplayInfinite(t).hit_tokens) << Name(policy);
  }
}

TEST(TieredCacheSimTest, RejectsBadOptions) {
  std::vector<TraceRequest> t = {Req({1})};
  EXPECT_FALSE(ReplayTiered(t, Tiers(0, 4, 2), EvictionPolicyKind::kLru).ok());
  EXPECT_FALSE(ReplayTiered(t, Tiers(1, 3, 2), EvictionPolicyKind::kLru).ok());  // under two segments
}

}  // namespace
}  // namespace kvstash::scheduler
