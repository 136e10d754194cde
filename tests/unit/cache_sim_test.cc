// kvstash-sim cache: the references (LRU, Belady, infinite) on hand-made traces with known
// answers, determinism, and the acceptance check on the shared synthetic trace.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/trace.h"
#include "scheduler/cache_sim.h"
#include "scheduler/tiered_cache_sim.h"
#include "tiers/dram_tier.h"

namespace kvstash::scheduler {
namespace {

using tiers::EvictionPolicyKind;

TraceRequest Req(std::vector<uint64_t> ids, uint64_t tokens = 0) {
  TraceRequest r;
  r.input_length = tokens != 0 ? tokens : ids.size() * kTraceBlockTokens;
  r.hash_ids = std::move(ids);
  return r;
}

TEST(CacheSimTest, InfiniteScoresEveryRepeatedPrefixCappedAtInputLength) {
  // Second request reuses blocks 1,2 of 3 and its input ends 100 tokens into block 3: 1024 hits.
  // Third request repeats the second exactly: all 1124 tokens hit (capped at input_length).
  std::vector<TraceRequest> t = {Req({1, 2, 3}), Req({1, 2, 4}, 1124), Req({1, 2, 4}, 1124)};
  CacheSimResult r = ReplayInfinite(t);
  EXPECT_EQ(r.hit_tokens, 1024u + 1124u);
  EXPECT_EQ(r.input_tokens, 1536u + 1124u + 1124u);
}

TEST(CacheSimTest, LruOnACycleLargerThanTheCacheMissesEverything) {
  // Chains a, b, c cycling through a 2-chain cache: LRU always evicts the chain that comes next.
  std::vector<TraceRequest> t;
  for (int round = 0; round < 4; ++round) {
    t.push_back(Req({10, 11}));
    t.push_back(Req({20, 21}));
    t.push_back(Req({30, 31}));
  }
  auto lru = ReplayPolicy(t, 4, EvictionPolicyKind::kLru);
  ASSERT_TRUE(lru.ok());
  EXPECT_EQ(lru->hit_tokens, 0u);
  // Belady keeps one chain (plus the other slots in turn): of the 9 repeats it hits exactly 6.
  auto belady = ReplayBelady(t, 4);
  ASSERT_TRUE(belady.ok());
  EXPECT_EQ(belady->hit_tokens, 6u * 2 * kTraceBlockTokens);
}

TEST(CacheSimTest, BeladyKeepsPrefixesAndNeverLosesToPolicies) {
  // A hot 2-block prefix shared by requests with one-off tails; capacity 3.
  std::vector<TraceRequest> t;
  for (uint64_t i = 0; i < 6; ++i) t.push_back(Req({1, 2, 100 + i}));
  auto belady = ReplayBelady(t, 3);
  ASSERT_TRUE(belady.ok());
  EXPECT_EQ(belady->hit_tokens, 5u * 2 * kTraceBlockTokens);  // every repeat hits the prefix
  for (const auto& [p, name] : tiers::kEvictionPolicyNames) {
    auto r = ReplayPolicy(t, 3, p);
    ASSERT_TRUE(r.ok()) << name;
    EXPECT_LE(r->hit_tokens, belady->hit_tokens) << name;
    EXPECT_GE(r->hit_tokens, ReplayPolicy(t, 3, EvictionPolicyKind::kLru)->hit_tokens) << name;
  }
}

TEST(CacheSimTest, RejectsZeroCapacity) {
  std::vector<TraceRequest> t = {Req({1})};
  EXPECT_FALSE(ReplayPolicy(t, 0, EvictionPolicyKind::kLru).ok());
  EXPECT_FALSE(ReplayBelady(t, 0).ok());
}

TEST(CacheSimTest, ReplayIsDeterministic) {
  std::vector<TraceRequest> t;
  for (uint64_t i = 0; i < 300; ++i) {
    const uint64_t doc = (i * 7919) % 23;
    t.push_back(Req({doc, 1000 + doc, 2000 + doc, 100000 + i}));
  }
  for (const auto& [p, name] : tiers::kEvictionPolicyNames) {
    auto a = ReplayPolicy(t, 20, p);
    auto b = ReplayPolicy(t, 20, p);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->hit_tokens, b->hit_tokens) << name;
    EXPECT_EQ(a->evictions, b->evictions) << name;
  }
  EXPECT_EQ(ReplayBelady(t, 20)->hit_tokens, ReplayBelady(t, 20)->hit_tokens);
}

TraceRequest WithOutput(TraceRequest r, uint64_t output_tokens) {
  r.output_length = output_tokens;
  return r;
}

TEST(CacheSimTest, OutputLengthAdviceOnlyForNewContexts) {
  const TraceRequest short_answer = WithOutput(Req({1, 2}), kLikelyMaxOutput);
  const TraceRequest long_answer = WithOutput(Req({1, 2}), kUnlikelyMinOutput + 1);
  const TraceRequest middle = WithOutput(Req({1, 2}), kUnlikelyMinOutput);
  EXPECT_EQ(OutputLengthAdvice(short_answer, true), ReuseAdvice::kLikely);
  EXPECT_EQ(OutputLengthAdvice(long_answer, true), ReuseAdvice::kUnlikely);
  EXPECT_EQ(OutputLengthAdvice(middle, true), std::nullopt);
  EXPECT_EQ(OutputLengthAdvice(short_answer, false), std::nullopt);
  EXPECT_EQ(OutputLengthAdvice(long_answer, false), std::nullopt);
}

TEST(CacheSimTest, AdviceChangesWhatPrefixArcKeeps) {
  // Two blocks of room. Block 1's request ends short (likely), block 2's long (unlikely), 3 and 4
  // carry no advice, then block 1 comes back. With advice 2 leaves first, then 3 (T1's coldest),
  // and 1 is still there: 512 of 2,560 tokens hit. Without advice, and under LRU, 1 is the
  // coldest once-touched block when 3 arrives, and nothing hits.
  std::vector<TraceRequest> t = {WithOutput(Req({1}), 5), WithOutput(Req({2}), 300), WithOutput(Req({3}), 100),
                                 WithOutput(Req({4}), 100), WithOutput(Req({1}), 100)};
  auto advised = ReplayPolicy(t, 2, EvictionPolicyKind::kPrefixArc, EngineAdvice::kOutputLength);
  auto plain = ReplayPolicy(t, 2, EvictionPolicyKind::kPrefixArc);
  auto lru = ReplayPolicy(t, 2, EvictionPolicyKind::kLru, EngineAdvice::kOutputLength);  // ignores advice
  ASSERT_TRUE(advised.ok() && plain.ok() && lru.ok());
  EXPECT_EQ(advised->hit_tokens, 512u);
  EXPECT_EQ(advised->input_tokens, 2560u);
  EXPECT_EQ(plain->hit_tokens, 0u);
  EXPECT_EQ(lru->hit_tokens, 0u);
}

// Acceptance on the shared trace (issue 21): the daemon's default, with and without the engine's
// advice, is never below LRU - 0.002 at any capacity of docs/EVICTION.md's sweep, and reaches 0.34
// at 5,859 blocks (0.3423 measured; 0.3645 with advice). The unguarded ARC keeps its measured
// 0.3459 (a regression guard on the policy the default is built on).
//
// The trace lies beside the checkout (KVSTASH_SHARED_TRACE, from CMake: <source>/../shared/traces),
// where CI puts it too. A missing trace fails the test rather than skipping it: a skip here once
// hid that CI never ran the check.
TEST(CacheSimTest, DefaultPolicyNeverBelowLruOnSharedTrace) {
  const std::filesystem::path path = KVSTASH_SHARED_TRACE;
  ASSERT_TRUE(std::filesystem::exists(path)) << "no shared trace at " << path
                                             << " (a checkout needs ../shared/traces beside it)";
  auto trace = LoadTrace(path.string());
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  const EvictionPolicyKind default_policy = tiers::DramTierOptions{}.eviction_policy;
  constexpr double kTolerance = 0.002;
  for (uint64_t capacity : {1000u, 2000u, 3000u, 5859u, 8000u, 10000u, 15000u, 20000u, 25000u,
                            30000u, 35000u, 40000u, 45000u, 50000u}) {
    auto lru = ReplayPolicy(*trace, capacity, EvictionPolicyKind::kLru);
    auto def = ReplayPolicy(*trace, capacity, default_policy);
    auto advised = ReplayPolicy(*trace, capacity, default_policy, EngineAdvice::kOutputLength);
    ASSERT_TRUE(lru.ok() && def.ok() && advised.ok());
    EXPECT_GE(def->hit_ratio(), lru->hit_ratio() - kTolerance) << Name(default_policy) << " at " << capacity;
    EXPECT_GE(advised->hit_ratio(), lru->hit_ratio() - kTolerance) << Name(default_policy) << "+advice at " << capacity;
    if (capacity == 5859) {
      EXPECT_GE(def->hit_ratio(), 0.34) << Name(default_policy);
      EXPECT_GE(advised->hit_ratio(), 0.364) << Name(default_policy) << "+advice";
      auto unguarded = ReplayPolicy(*trace, capacity, EvictionPolicyKind::kPrefixArcUnguarded);
      ASSERT_TRUE(unguarded.ok());
      EXPECT_GE(unguarded->hit_ratio(), 0.345);
    }
  }
}

// The tiered daemon on the shared trace: with an SSD ten times DRAM, where LRU's order wins the
// system's hits, the default is within 0.002 of LRU-in-DRAM; with an SSD a third of DRAM, where
// ARC's wins, it keeps at least 0.02 of ARC's gain (0.0294 measured).
TEST(CacheSimTest, TieredDefaultNeverBelowLruOnSharedTrace) {
  const std::filesystem::path path = KVSTASH_SHARED_TRACE;
  ASSERT_TRUE(std::filesystem::exists(path)) << "no shared trace at " << path;
  auto trace = LoadTrace(path.string());
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  const EvictionPolicyKind default_policy = tiers::DramTierOptions{}.eviction_policy;
  for (const auto& [dram, ssd] : std::vector<std::pair<uint64_t, uint64_t>>{
           {1000, 20000}, {2000, 20000}, {5859, 20000}, {5859, 2000}}) {
    TieredSimOptions o;
    o.dram_blocks = dram;
    o.ssd_blocks = ssd;
    auto lru = ReplayTiered(*trace, o, EvictionPolicyKind::kLru);
    auto def = ReplayTiered(*trace, o, default_policy);
    ASSERT_TRUE(lru.ok() && def.ok());
    EXPECT_GE(def->system.hit_ratio(), lru->system.hit_ratio() - 0.002) << dram << " + " << ssd;
    if (ssd < dram) {
      EXPECT_GE(def->system.hit_ratio(), lru->system.hit_ratio() + 0.02) << dram << " + " << ssd;
    }
  }
}

}  // namespace
}  // namespace kvstash::scheduler
