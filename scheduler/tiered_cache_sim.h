// Tiered replay for `kvstash-sim cache --ssd-blocks N`: the daemon's real placement of a DRAM tier
// above an SSD tier (tiers/tier_manager.h), in blocks, so the hit ratio reported is the system's,
// not only DRAM's. docs/EVICTION.md ("The tiered daemon") states the model and its limits.
//
// Per request, in order:
//  * lookup: the longest prefix of its hash_ids each of which is in DRAM or on SSD scores
//    min(blocks x 512, input_length) tokens (the same metric as cache_sim.h); the tokens of blocks
//    in that prefix that DRAM holds count as served from DRAM, the rest as served from SSD;
//  * the prefix's blocks, head first: OnAccess in DRAM, or — only on SSD — a promotion: the block
//    is inserted into DRAM (its SSD copy stays: the tiers are inclusive) and its SSD hit count
//    grows;
//  * the other blocks, head first: OnAccess when in DRAM; nothing when only on SSD (the daemon
//    answers such a put ALREADY_EXISTS); otherwise inserted into DRAM;
//  * each DRAM insert first evicts the policy's victims while DRAM is full; a victim the SSD does
//    not hold is appended to the SSD log (demotion; the demotion queue never overflows here).
// The SSD log (tiers/ssd_tier.h) is tiers::ShadowSsdLog, the model the LRU guard's shadows replay:
// segments of segment_blocks blocks filled in order; when no segment is free the oldest is
// reclaimed whole, its blocks read at least reinsert_min_hits times since written re-appended (most
// hits first, at most reinsert_max_fraction of a segment, their hit counts reset), the rest
// dropped. The policy is told the SSD's geometry (EvictionPolicy::SetLowerTier), as the daemon's
// would be.
//
// Thread-safety: plain functions over const data; each call owns its state.
#pragma once

#include <cstdint>
#include <vector>

#include "common/trace.h"
#include "kvstash/result.h"
#include "scheduler/cache_sim.h"

namespace kvstash::scheduler {

struct TieredSimOptions {
  uint64_t dram_blocks = 0;
  uint64_t ssd_blocks = 0;
  uint64_t segment_blocks = 0;  // 0: ssd_blocks / 64 (the daemon's 16 GiB / 256 MiB), at least 1
  uint32_t reinsert_min_hits = 1;
  double reinsert_max_fraction = 0.5;
};

struct TieredSimResult {
  CacheSimResult system;      // hit tokens from either tier
  uint64_t dram_hit_tokens = 0;
  uint64_t ssd_hit_tokens = 0;  // system.hit_tokens - dram_hit_tokens
  uint64_t promotions = 0;
  uint64_t demotions = 0;         // DRAM victims written to SSD
  uint64_t ssd_dropped = 0;       // blocks dropped by reclaims
  uint64_t ssd_reinserted = 0;
};

// Replays `trace` through DRAM under `policy` (tiers/eviction_policy.h) above an SSD log.
// INVALID_ARGUMENT for dram_blocks 0 or ssd_blocks smaller than two segments.
Result<TieredSimResult> ReplayTiered(const std::vector<TraceRequest>& trace, const TieredSimOptions& options,
                                     tiers::EvictionPolicyKind policy, EngineAdvice advice = EngineAdvice::kNone);

}  // namespace kvstash::scheduler
