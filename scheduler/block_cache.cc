#include "scheduler/block_cache.h"

#include <algorithm>

namespace kvstash::scheduler {

uint32_t BlockCache::PrefixMatch(std::span<const BlockId> chain) const {
  uint32_t n = 0;
  while (n < chain.size() && index_.count(chain[n]) != 0) ++n;
  return n;
}

void BlockCache::Promote(BlockId id) {
  auto it = index_.find(id);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  if (capacity_ == 0) return;
  if (index_.size() >= capacity_) {
    index_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(id);
  index_.emplace(id, lru_.begin());
}

void BlockCache::InsertChain(std::span<const BlockId> chain) {
  for (size_t i = chain.size(); i-- > 0;) Promote(chain[i]);
}

void BlockCache::Touch(std::span<const BlockId> chain, uint32_t blocks) {
  for (size_t i = std::min<size_t>(blocks, chain.size()); i-- > 0;) {
    auto it = index_.find(chain[i]);
    if (it != index_.end()) lru_.splice(lru_.begin(), lru_, it->second);
  }
}

}  // namespace kvstash::scheduler
