#include "tiers/shadow_policy.h"

namespace kvstash::tiers {

bool ShadowPolicy::Reference(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size,
                             uint64_t budget_bytes) {
  const bool resident = resident_.contains(key);
  const bool broken_chain = parent && previous_ == parent && !previous_hit_;
  const bool hit = resident && !broken_chain;
  previous_ = key;
  previous_hit_ = hit;
  if (resident) {
    policy_->OnAccess(key);
    return hit;
  }
  const auto all = [](const BlockKey&) { return true; };
  while (!resident_.empty() && bytes_ + size > budget_bytes) {
    const std::optional<BlockKey> victim = policy_->PickVictim(all);
    if (!victim) break;
    auto it = resident_.find(*victim);
    if (it == resident_.end()) break;  // a policy naming a key it was never given: stop, stay consistent
    bytes_ -= it->second;
    resident_.erase(it);
    policy_->OnErase(*victim);
  }
  resident_.emplace(key, size);
  bytes_ += size;
  policy_->OnInsert(key, parent, size);
  return hit;
}

void ShadowPolicy::Advise(const BlockKey& key, ReuseAdvice advice) {
  if (resident_.contains(key)) policy_->OnAdvise(key, advice);
}

}  // namespace kvstash::tiers
