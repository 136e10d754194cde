// PrefixIndex: which prefill instances hold which blocks, for the live conductor. One hash lookup
// per chain block answers every instance's prefix match at once: the holder sets are intersected
// along the chain, and an instance drops out at the first block it lacks.
//
// Instances are slots 0..kMaxInstances-1. Memory is about 80 bytes per indexed block.
//
// Thread-safety: none; the owner serialises access.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "scheduler/block_cache.h"

namespace kvstash::scheduler {

class PrefixIndex {
 public:
  static constexpr uint32_t kMaxInstances = 256;

  // REQUIRES: instance < kMaxInstances.
  void Add(uint32_t instance, BlockId block);
  void Remove(uint32_t instance, BlockId block);
  // Removes every block of one instance (it left or restarted). O(indexed blocks).
  void Clear(uint32_t instance);
  // out[i] = leading blocks of chain held by instance i, for i < instances.
  void Matches(std::span<const BlockId> chain, uint32_t instances,
               std::vector<uint32_t>& out) const;

  uint64_t blocks() const { return holders_.size(); }

 private:
  using Set = std::array<uint64_t, kMaxInstances / 64>;
  std::unordered_map<BlockId, Set> holders_;
};

}  // namespace kvstash::scheduler
