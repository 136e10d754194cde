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

void LruGuardPolicy::Observe(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size) {
  const uint64_t budget = real_.resident_bytes();
  const bool arc_hit = arc_.Reference(key, parent, size, budget);
  const bool lru_hit = lru_.Reference(key, parent, size, budget);
  const double window = std::max(kMinWindow, kWindowFactor * static_cast<double>(real_.size()));
  const double keep = 1.0 - 1.0 / window;
  const double bytes = static_cast<double>(size);
  lru_lead_ = lru_lead_ * keep + (lru_hit ? bytes : 0.0) - (arc_hit ? bytes : 0.0);
  disagreed_sq_ = disagreed_sq_ * keep + (lru_hit != arc_hit ? bytes * bytes : 0.0);
  using Order = PrefixArcPolicy::VictimOrder;
  // Were both orders equally good, the lead would be a sum of +-bytes over the references where
  // the shadows disagree: standard deviation sqrt(disagreed_sq_).
  const double margin = kConfidence * std::sqrt(disagreed_sq_);
  Order want = real_.victim_order();
  if (lru_lead_ > margin) want = Order::kLeafLru;
  if (lru_lead_ < -margin) want = Order::kArc;
  if (want != real_.victim_order()) {
    real_.set_victim_order(want);
    ++switches_;
  }
}

std::unique_ptr<EvictionPolicy> MakePrefixArcPolicy() { return std::make_unique<LruGuardPolicy>(); }

}  // namespace kvstash::tiers
