#include "tiers/shadow_policy.h"

#include <algorithm>

namespace kvstash::tiers {

ShadowSsdLog::ShadowSsdLog(const EvictionPolicy::LowerTier& lower) : lower_(lower) {
  lower_.segment_bytes = std::max<uint64_t>(1, lower_.segment_bytes);
  const uint64_t segments = std::max<uint64_t>(2, lower_.capacity_bytes / lower_.segment_bytes);
  segments_.resize(segments);
  fill_.assign(segments, 0);
  for (uint32_t s = 1; s < segments; ++s) free_.push_back(s);
}

void ShadowSsdLog::Hit(const BlockKey& key) {
  if (auto it = index_.find(key); it != index_.end()) ++it->second.hits;
}

void ShadowSsdLog::Append(const BlockKey& key, uint64_t size) {
  if (fill_[open_] + size > lower_.segment_bytes && fill_[open_] > 0) OpenNext();
  segments_[open_].push_back(key);
  fill_[open_] += size;
  index_[key] = Entry{open_, 0, size};
}

void ShadowSsdLog::OpenNext() {
  sealed_.push_back(open_);
  if (!free_.empty()) {
    open_ = free_.front();
    free_.pop_front();
    return;
  }
  Reclaim();
}

void ShadowSsdLog::Reclaim() {
  const uint32_t victim = sealed_.front();
  sealed_.pop_front();
  // The segment's blocks with their entries (looked up once), hottest first, append order on ties.
  std::vector<std::pair<BlockKey, Entry>> live;
  live.reserve(segments_[victim].size());
  for (const BlockKey& key : segments_[victim]) {
    auto it = index_.find(key);
    live.emplace_back(key, it->second);
    index_.erase(it);
  }
  segments_[victim].clear();
  fill_[victim] = 0;
  std::stable_sort(live.begin(), live.end(), [](const auto& a, const auto& b) { return a.second.hits > b.second.hits; });
  const auto budget = static_cast<uint64_t>(lower_.reinsert_max_fraction * static_cast<double>(lower_.segment_bytes));
  uint64_t kept_bytes = 0;
  uint64_t kept = 0;
  open_ = victim;
  for (const auto& [key, e] : live) {
    if (lower_.reinsert_min_hits == 0 || e.hits < lower_.reinsert_min_hits || kept_bytes + e.size > budget) continue;
    kept_bytes += e.size;
    ++kept;
    segments_[open_].push_back(key);
    fill_[open_] += e.size;
    index_[key] = Entry{open_, 0, e.size};  // re-appended blocks start with no hits
  }
  dropped_ += live.size() - kept;
  reinserted_ += kept;
}

bool ShadowPolicy::Reference(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size,
                             uint64_t budget_bytes) {
  const bool resident = resident_.contains(key);
  const bool below = !resident && lower_ && lower_->Contains(key);
  const bool broken_chain = parent && previous_ == parent && !previous_hit_;
  const bool hit = (resident || below) && !broken_chain;
  previous_ = key;
  previous_hit_ = hit;
  if (resident) {
    policy_->OnAccess(key);
    return hit;
  }
  if (below) lower_->Hit(key);  // promoted: the lower tier keeps its copy
  Insert(key, parent, size, budget_bytes);
  return hit;
}

void ShadowPolicy::Insert(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size,
                          uint64_t budget_bytes) {
  const auto all = [](const BlockKey&) { return true; };
  while (!resident_.empty() && bytes_ + size > budget_bytes) {
    const std::optional<BlockKey> victim = policy_->PickVictim(all);
    if (!victim) break;
    auto it = resident_.find(*victim);
    if (it == resident_.end()) break;  // a policy naming a key it was never given: stop, stay consistent
    if (lower_ && !lower_->Contains(*victim)) lower_->Append(*victim, it->second);
    bytes_ -= it->second;
    resident_.erase(it);
    policy_->OnErase(*victim);
  }
  resident_.emplace(key, size);
  bytes_ += size;
  policy_->OnInsert(key, parent, size);
}

void ShadowPolicy::Advise(const BlockKey& key, ReuseAdvice advice) {
  if (resident_.contains(key)) policy_->OnAdvise(key, advice);
}

}  // namespace kvstash::tiers
