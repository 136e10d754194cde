#include "scheduler/tiered_cache_sim.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "kvstash/block_key.h"
#include "tiers/eviction_policy.h"
#include "tiers/shadow_policy.h"

namespace kvstash::scheduler {
namespace {

constexpr uint64_t kKeyTag = 0x6b767374617368ULL;  // as cache_sim.cc: "kvstash"

BlockKey KeyOf(uint64_t hash_id) { return BlockKey::FromParts(kKeyTag, hash_id); }

}  // namespace

Result<TieredSimResult> ReplayTiered(const std::vector<TraceRequest>& trace, const TieredSimOptions& options,
                                     tiers::EvictionPolicyKind policy_kind, EngineAdvice engine_advice) {
  TieredSimOptions o = options;
  if (o.dram_blocks == 0) return InvalidArgument("DRAM capacity must be at least one block");
  if (o.segment_blocks == 0) o.segment_blocks = std::max<uint64_t>(1, o.ssd_blocks / 64);
  if (o.ssd_blocks < 2 * o.segment_blocks) return InvalidArgument("the SSD must hold at least two segments");
  std::unique_ptr<tiers::EvictionPolicy> policy = tiers::MakeEvictionPolicy(policy_kind);
  // Blocks weigh 1 here, so the SSD's bytes are its blocks.
  policy->SetLowerTier({o.ssd_blocks, o.segment_blocks, o.reinsert_min_hits, o.reinsert_max_fraction});

  std::unordered_set<uint64_t> dram;
  // The same model of the SSD log the LRU guard's shadows replay (tiers/shadow_policy.h).
  tiers::ShadowSsdLog ssd({o.ssd_blocks, o.segment_blocks, o.reinsert_min_hits, o.reinsert_max_fraction});

  TieredSimResult out;
  std::unordered_set<uint64_t> named;
  const auto all = [](const BlockKey&) { return true; };
  const auto insert_into_dram = [&](uint64_t id, std::optional<uint64_t> chain_parent,
                                    std::optional<ReuseAdvice> advice) {
    while (dram.size() >= o.dram_blocks) {
      const std::optional<BlockKey> victim = policy->PickVictim(all);
      if (!victim) return;
      const uint64_t victim_id = victim->Low();
      if (!dram.erase(victim_id)) return;
      policy->OnErase(*victim);
      ++out.system.evictions;
      if (!ssd.Contains(*victim)) {
        ssd.Append(*victim, 1);
        ++out.demotions;
      }
    }
    dram.insert(id);
    policy->OnInsert(KeyOf(id), chain_parent ? std::optional<BlockKey>(KeyOf(*chain_parent)) : std::nullopt, 1);
    if (advice) policy->OnAdvise(KeyOf(id), *advice);
  };

  for (const TraceRequest& r : trace) {
    const auto& ids = r.hash_ids;
    size_t hit = 0, dram_hit = 0;
    while (hit < ids.size() && (dram.contains(ids[hit]) || ssd.Contains(KeyOf(ids[hit])))) {
      if (dram.contains(ids[hit]) && dram_hit == hit) ++dram_hit;
      ++hit;
    }
    std::optional<ReuseAdvice> advice;
    if (engine_advice == EngineAdvice::kOutputLength && !ids.empty()) {
      advice = OutputLengthAdvice(r, !named.contains(ids.front()));
      named.insert(ids.begin(), ids.end());
    }
    const uint64_t tokens = std::min<uint64_t>(hit * kTraceBlockTokens, r.input_length);
    const uint64_t dram_tokens = std::min<uint64_t>(dram_hit * kTraceBlockTokens, tokens);
    out.system.hit_tokens += tokens;
    out.system.input_tokens += r.input_length;
    out.dram_hit_tokens += dram_tokens;
    out.ssd_hit_tokens += tokens - dram_tokens;
    std::optional<uint64_t> chain_parent;
    for (size_t i = 0; i < ids.size(); ++i) {
      const uint64_t id = ids[i];
      if (dram.contains(id)) {
        policy->OnAccess(KeyOf(id));
      } else if (ssd.Contains(KeyOf(id))) {
        if (i < hit) {
          ssd.Hit(KeyOf(id));
          insert_into_dram(id, chain_parent, std::nullopt);
          ++out.promotions;
        }
      } else {
        insert_into_dram(id, chain_parent, advice);
      }
      chain_parent = id;
    }
  }
  out.ssd_dropped = ssd.dropped();
  out.ssd_reinserted = ssd.reinserted();
  return out;
}

}  // namespace kvstash::scheduler
