// BlockCache: one instance's local KVCache at block granularity, evicting the least recently used
// block when full. Chains are touched tail first so a chain's head is the most recent and the tail
// leaves first — a hit on block i is useless without blocks 0..i-1.
//
// Thread-safety: none; the owner serialises access (the simulator is single-threaded).
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>

namespace kvstash::scheduler {

using BlockId = uint64_t;

class BlockCache {
 public:
  explicit BlockCache(uint64_t capacity_blocks) : capacity_(capacity_blocks) {}

  // Leading blocks of `chain` present, without changing recency.
  uint32_t PrefixMatch(std::span<const BlockId> chain) const;
  // Makes every block of chain present (inserting missing ones) and most recent, head last.
  void InsertChain(std::span<const BlockId> chain);
  // Refreshes the first `blocks` blocks of chain if present (a reuse), head last.
  void Touch(std::span<const BlockId> chain, uint32_t blocks);

  bool Contains(BlockId id) const { return index_.count(id) != 0; }
  uint64_t size() const { return index_.size(); }
  uint64_t capacity() const { return capacity_; }

 private:
  void Promote(BlockId id);
  uint64_t capacity_;
  std::list<BlockId> lru_;  // front = most recent
  std::unordered_map<BlockId, std::list<BlockId>::iterator> index_;
};

}  // namespace kvstash::scheduler
