// ShadowPolicy: an EvictionPolicy replayed on a resident set of its own — keys and sizes only, no
// bytes — to learn what that policy would have hit on the references the real tier sees. The LRU
// guard (tiers/lru_guard_policy.h) runs two of them beside the daemon's policy. With a lower tier
// (SetLowerTier) a shadow replays the tier pair: its victims go to a model of the SSD log below
// (ShadowSsdLog), a reference found there is a hit and is promoted, as TierManager does.
//
// Thread-safety: NOT thread-safe; the owner serialises calls (as the tier does for its policy).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "kvstash/block_key.h"
#include "tiers/eviction_policy.h"
#include "tiers/policy_key_hash.h"

namespace kvstash::tiers {

// The SSD tier's log (tiers/ssd_tier.h) in keys and sizes: segments of segment_bytes filled in
// order; when none is free the oldest is reclaimed whole, its blocks read at least
// reinsert_min_hits times since written re-appended (most hits first, at most
// reinsert_max_fraction of a segment, hits reset), the rest dropped.
class ShadowSsdLog {
 public:
  explicit ShadowSsdLog(const EvictionPolicy::LowerTier& lower);

  bool Contains(const BlockKey& key) const { return index_.contains(key); }
  // A read of a held block (a promotion).
  void Hit(const BlockKey& key);
  // Appends a block it does not hold (a demotion), reclaiming the oldest segment when full.
  void Append(const BlockKey& key, uint64_t size);

  uint64_t dropped() const { return dropped_; }        // blocks reclaims dropped
  uint64_t reinserted() const { return reinserted_; }  // blocks reclaims re-appended

 private:
  struct Entry {
    uint32_t segment = 0;
    uint32_t hits = 0;
    uint64_t size = 0;
  };
  void OpenNext();
  void Reclaim();

  EvictionPolicy::LowerTier lower_;
  std::vector<std::vector<BlockKey>> segments_;
  std::vector<uint64_t> fill_;  // bytes per segment
  std::deque<uint32_t> sealed_, free_;
  uint32_t open_ = 0;
  std::unordered_map<BlockKey, Entry, PolicyKeyHash, PolicyKeyEq> index_;
  uint64_t dropped_ = 0, reinserted_ = 0;
};

class ShadowPolicy {
 public:
  explicit ShadowPolicy(std::unique_ptr<EvictionPolicy> policy) : policy_(std::move(policy)) {}

  // One reference to `key` (an insert or a read in the real tier). Returns whether it is a prefix
  // hit here: `key` is resident and, when `parent` is the key referenced just before (the chain
  // being walked head first), that reference was a prefix hit too. Then the reference is applied
  // as the real tier would: OnAccess when resident; otherwise victims leave (PickVictim, every
  // block evictable) while the resident bytes plus `size` exceed `budget_bytes`, and `key` is
  // inserted with `parent`.
  bool Reference(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size, uint64_t budget_bytes);
  // Forwards engine advice for a block resident here.
  void Advise(const BlockKey& key, ReuseAdvice advice);
  // Replays the tier pair from now on: victims are demoted into a model of `lower` and a reference
  // found only there is a hit, promoted back.
  void SetLowerTier(const EvictionPolicy::LowerTier& lower) { lower_ = std::make_unique<ShadowSsdLog>(lower); }

  uint64_t resident_bytes() const { return bytes_; }
  size_t resident_blocks() const { return resident_.size(); }

 private:
  void Insert(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size, uint64_t budget_bytes);

  std::unique_ptr<EvictionPolicy> policy_;
  std::unique_ptr<ShadowSsdLog> lower_;  // null: no tier below
  std::unordered_map<BlockKey, uint64_t, PolicyKeyHash, PolicyKeyEq> resident_;  // key -> size
  uint64_t bytes_ = 0;
  std::optional<BlockKey> previous_;
  bool previous_hit_ = false;
};

}  // namespace kvstash::tiers
