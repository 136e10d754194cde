// ShadowPolicy: an EvictionPolicy replayed on a resident set of its own — keys and sizes only, no
// bytes — to learn what that policy would have hit on the references the real tier sees. The LRU
// guard (tiers/lru_guard_policy.h) runs two of them beside the daemon's policy.
//
// Thread-safety: NOT thread-safe; the owner serialises calls (as the tier does for its policy).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>

#include "kvstash/block_key.h"
#include "tiers/eviction_policy.h"

namespace kvstash::tiers {

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

  uint64_t resident_bytes() const { return bytes_; }
  size_t resident_blocks() const { return resident_.size(); }

 private:
  std::unique_ptr<EvictionPolicy> policy_;
  std::unordered_map<BlockKey, uint64_t, BlockKeyHash> resident_;  // key -> size
  uint64_t bytes_ = 0;
  std::optional<BlockKey> previous_;
  bool previous_hit_ = false;
};

}  // namespace kvstash::tiers
