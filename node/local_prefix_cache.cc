#include "node/local_prefix_cache.h"

#include <utility>

namespace kvstash::node {

size_t LocalPrefixCache::AcquirePrefix(std::span<const BlockKey> chain, size_t max_blocks,
                                       std::vector<uint32_t>& pages) {
  size_t hits = 0;
  while (hits < chain.size() && hits < max_blocks) {
    auto it = blocks_.find(chain[hits]);
    if (it == blocks_.end()) break;
    Block& block = it->second;
    if (block.pins++ == 0) lru_.erase(block.lru);
    pages.insert(pages.end(), block.pages.begin(), block.pages.end());
    ++hits;
  }
  return hits;
}

void LocalPrefixCache::Release(std::span<const BlockKey> keys) {
  for (const BlockKey& key : keys) {
    auto it = blocks_.find(key);
    if (it == blocks_.end() || it->second.pins == 0) continue;
    if (--it->second.pins == 0) it->second.lru = lru_.insert(lru_.end(), key);
  }
}

bool LocalPrefixCache::Insert(const BlockKey& key, std::span<const uint32_t> pages) {
  if (blocks_.contains(key)) return false;
  Block block;
  block.pages.assign(pages.begin(), pages.end());
  block.lru = lru_.insert(lru_.end(), key);
  blocks_.emplace(key, std::move(block));
  if (record_events_) inserted_.push_back(key);
  return true;
}

bool LocalPrefixCache::MakeRoom(size_t pages) {
  while (pool_.free_pages() < pages && !lru_.empty()) {
    auto it = blocks_.find(lru_.front());
    lru_.pop_front();
    pool_.FreeAll(it->second.pages);
    if (record_events_) evicted_.push_back(it->first);
    blocks_.erase(it);
  }
  return pool_.free_pages() >= pages;
}

std::pair<std::vector<BlockKey>, std::vector<BlockKey>> LocalPrefixCache::TakeEvents() {
  return {std::exchange(inserted_, {}), std::exchange(evicted_, {})};
}

}  // namespace kvstash::node
