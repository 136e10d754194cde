#include "tiers/lru_guard_policy.h"

#include <algorithm>
#include <cmath>

namespace kvstash::tiers {

LruGuardPolicy::LruGuardPolicy()
    : arc_(MakeUnguardedPrefixArcPolicy()), lru_(MakePrefixAwarePolicy()) {}

void LruGuardPolicy::OnInsert(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size) {
  real_.OnInsert(key, parent, size);
  Observe(key, parent, size);
}

void LruGuardPolicy::OnAccess(const BlockKey& key) {
  const std::optional<PrefixArcPolicy::Resident> resident = real_.Find(key);
  if (!resident) return;
  real_.OnAccess(key);
  Observe(key, resident->parent, resident->size);
}

void LruGuardPolicy::OnAdvise(const BlockKey& key, ReuseAdvice advice) {
  real_.OnAdvise(key, advice);
  arc_.Advise(key, advice);
}

void LruGuardPolicy::SetLowerTier(const LowerTier& lower) {
  arc_ = ShadowPolicy(MakeUnguardedPrefixArcPolicy());
  lru_ = ShadowPolicy(MakeLruPolicy());
  arc_.SetLowerTier(lower);
  lru_.SetLowerTier(lower);
  real_.TrackAllBlocks();
  fallback_ = PrefixArcPolicy::VictimOrder::kLru;
  lower_bytes_ = lower.capacity_bytes;
  lru_lead_ = 0;
  disagreed_sq_ = 0;
  // Above an SSD the guard starts in LRU's order: the SSD fills with this tier's victims, and
  // content demoted under the wrong order stays for a whole lap of the log, so a late switch to
  // LRU recovers slowly, while ARC's gain, where it has one, shows within a DRAM window.
  real_.set_victim_order(fallback_);
}

void LruGuardPolicy::Observe(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size) {
  const uint64_t budget = real_.resident_bytes();
  const bool arc_hit = arc_.Reference(key, parent, size, budget);
  const bool lru_hit = lru_.Reference(key, parent, size, budget);
  // The window spans what the system holds: with an SSD below, its blocks too (at this tier's
  // mean block size), since an order's effect on the SSD shows only over a lap of the log.
  double blocks = static_cast<double>(real_.size());
  if (lower_bytes_ > 0 && real_.size() > 0) {
    blocks += static_cast<double>(lower_bytes_) * blocks / static_cast<double>(std::max<uint64_t>(1, real_.resident_bytes()));
  }
  const double window = std::max(kMinWindow, kWindowFactor * blocks);
  const double keep = 1.0 - 1.0 / window;
  const double bytes = static_cast<double>(size);
  lru_lead_ = lru_lead_ * keep + (lru_hit ? bytes : 0.0) - (arc_hit ? bytes : 0.0);
  disagreed_sq_ = disagreed_sq_ * keep + (lru_hit != arc_hit ? bytes * bytes : 0.0);
  using Order = PrefixArcPolicy::VictimOrder;
  // Were both orders equally good, the lead would be a sum of +-bytes over the references where
  // the shadows disagree: standard deviation sqrt(disagreed_sq_).
  const double margin = kConfidence * std::sqrt(disagreed_sq_);
  Order want = real_.victim_order();
  if (lru_lead_ > margin) want = fallback_;
  if (lru_lead_ < -margin) want = Order::kArc;
  if (want != real_.victim_order()) {
    real_.set_victim_order(want);
    ++switches_;
  }
}

std::unique_ptr<EvictionPolicy> MakePrefixArcPolicy() { return std::make_unique<LruGuardPolicy>(); }

}  // namespace kvstash::tiers
