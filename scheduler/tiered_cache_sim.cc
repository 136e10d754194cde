#include "scheduler/tiered_cache_sim.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "kvstash/block_key.h"
#include "tiers/eviction_policy.h"

namespace kvstash::scheduler {
namespace {

constexpr uint64_t kKeyTag = 0x6b767374617368ULL;  // as cache_sim.cc: "kvstash"

BlockKey KeyOf(uint64_t hash_id) { return BlockKey::FromParts(kKeyTag, hash_id); }

// The SSD tier's log in blocks (tiers/ssd_tier.cc, ReclaimOldestLocked): see the header.
// `parent_of` gives a block's chain predecessor, `in_dram` whether DRAM holds a block; both are
// read only by SsdReclaim::kPrefix.
class SsdLog {
 public:
  using ParentOf = std::function<std::optional<uint64_t>(uint64_t)>;
  using InDram = std::function<bool(uint64_t)>;

  SsdLog(const TieredSimOptions& o, ParentOf parent_of, InDram in_dram)
      : o_(o), parent_of_(std::move(parent_of)), in_dram_(std::move(in_dram)),
        segments_(o.ssd_blocks / o.segment_blocks) {
    for (uint32_t s = 1; s < segments_.size(); ++s) free_.push_back(s);
  }

  bool Contains(uint64_t id) const { return index_.contains(id); }
  void Hit(uint64_t id) { ++index_.at(id).hits; }

  void Append(uint64_t id) {
    if (segments_[open_].size() == o_.segment_blocks) OpenNext();
    segments_[open_].push_back(id);
    index_[id] = Entry{open_, 0};
  }

  uint64_t dropped() const { return dropped_; }
  uint64_t reinserted() const { return reinserted_; }

 private:
  struct Entry {
    uint32_t segment = 0;
    uint32_t hits = 0;
  };

  void OpenNext() {
    fifo_.push_back(open_);
    if (!free_.empty()) {
      open_ = free_.front();
      free_.pop_front();
      return;
    }
    Reclaim();
  }

  // Empties the oldest sealed segment into the open position, re-appending its hot blocks.
  void Reclaim() {
    const uint32_t victim = fifo_.front();
    fifo_.pop_front();
    std::vector<uint64_t> live = std::move(segments_[victim]);
    segments_[victim].clear();
    std::stable_sort(live.begin(), live.end(),
                     [&](uint64_t a, uint64_t b) { return index_.at(a).hits > index_.at(b).hits; });
    const auto budget = static_cast<size_t>(o_.reinsert_max_fraction * static_cast<double>(o_.segment_blocks));
    std::vector<uint64_t> hot;
    for (uint64_t id : live) {
      const bool eligible = o_.reinsert_min_hits > 0 && index_.at(id).hits >= o_.reinsert_min_hits;
      if (eligible && hot.size() < budget) hot.push_back(id);
    }
    for (uint64_t id : live) index_.erase(id);
    if (o_.reclaim == SsdReclaim::kPrefix) {
      const std::unordered_set<uint64_t> kept(hot.begin(), hot.end());
      std::erase_if(hot, [&](uint64_t id) { return !Reachable(id, kept); });
    }
    dropped_ += live.size() - hot.size();
    reinserted_ += hot.size();
    open_ = victim;
    for (uint64_t id : hot) {
      segments_[open_].push_back(id);
      index_[id] = Entry{open_, 0};  // re-appended blocks start with no hits, as in SsdTier
    }
  }

  // Whether a prefix lookup can still reach `id` after a reclaim that keeps `kept`: its parent
  // (if any) is in DRAM, elsewhere on SSD, or kept with it.
  bool Reachable(uint64_t id, const std::unordered_set<uint64_t>& kept) const {
    const std::optional<uint64_t> p = parent_of_(id);
    return !p || in_dram_(*p) || Contains(*p) || kept.contains(*p);
  }

  TieredSimOptions o_;
  ParentOf parent_of_;
  InDram in_dram_;
  std::vector<std::vector<uint64_t>> segments_;
  std::deque<uint32_t> fifo_, free_;
  uint32_t open_ = 0;
  std::unordered_map<uint64_t, Entry> index_;
  uint64_t dropped_ = 0, reinserted_ = 0;
};

}  // namespace

Result<TieredSimResult> ReplayTiered(const std::vector<TraceRequest>& trace, const TieredSimOptions& options,
                                     std::string_view policy_name, EngineAdvice engine_advice) {
  TieredSimOptions o = options;
  if (o.dram_blocks == 0) return InvalidArgument("DRAM capacity must be at least one block");
  if (o.segment_blocks == 0) o.segment_blocks = std::max<uint64_t>(1, o.ssd_blocks / 64);
  if (o.ssd_blocks < 2 * o.segment_blocks) return InvalidArgument("the SSD must hold at least two segments");
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<tiers::EvictionPolicy> policy, tiers::MakeEvictionPolicy(policy_name));

  std::unordered_set<uint64_t> dram;
  std::unordered_map<uint64_t, uint64_t> parent_of;  // a hash id's chain predecessor (fixed by the prefix)
  const auto parent = [&](uint64_t id) -> std::optional<uint64_t> {
    auto it = parent_of.find(id);
    return it == parent_of.end() ? std::nullopt : std::optional<uint64_t>(it->second);
  };
  SsdLog ssd(o, parent, [&](uint64_t id) { return dram.contains(id); });

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
      if (!ssd.Contains(victim_id)) {
        ssd.Append(victim_id);
        ++out.demotions;
      }
    }
    dram.insert(id);
    policy->OnInsert(KeyOf(id), chain_parent ? std::optional<BlockKey>(KeyOf(*chain_parent)) : std::nullopt, 1);
    if (advice) policy->OnAdvise(KeyOf(id), *advice);
  };

  for (const TraceRequest& r : trace) {
    const auto& ids = r.hash_ids;
    for (size_t i = 1; i < ids.size(); ++i) parent_of.try_emplace(ids[i], ids[i - 1]);
    size_t hit = 0, dram_hit = 0;
    while (hit < ids.size() && (dram.contains(ids[hit]) || ssd.Contains(ids[hit]))) {
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
      } else if (ssd.Contains(id)) {
        if (i < hit) {
          ssd.Hit(id);
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
