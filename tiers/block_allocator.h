// BlockAllocator: hands out ranges of a fixed address space (offsets into an Arena) for blocks of
// variable size. It never touches memory, so the same object backs the DRAM tier and the
// allocation benchmark.
//
// Policy: sizes are rounded up to 4 KiB granules. Best fit: the smallest free range that holds
// the request is chosen (lowest offset among equals) and the request is carved from its front.
// Freed ranges are coalesced with free neighbours at once, so two free ranges are never adjacent.
//
// Structures: free ranges are indexed twice — by offset (std::map offset -> length, for
// coalescing) and by (length, offset) (std::set, for best fit). Allocate and Free are O(log n)
// in the number of free ranges; Stats() is O(1).
//
// Thread-safety: every method may be called from any thread; one internal mutex serialises them
// (in the DRAM tier it is the innermost lock).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "common/mutex.h"

namespace kvstash::tiers {

struct AllocatorStats {
  uint64_t total_bytes = 0;
  uint64_t allocated_bytes = 0;  // after rounding
  uint64_t free_bytes = 0;
  uint64_t largest_free_bytes = 0;  // the largest request that can succeed now
  uint64_t free_ranges = 0;
  uint64_t allocations = 0;  // ranges currently allocated
  // External fragmentation: 1 - largest_free / free_bytes; 0 when nothing is free.
  double fragmentation = 0.0;
};

class BlockAllocator {
 public:
  static constexpr uint64_t kGranule = 4096;

  // Manages [0, total_bytes rounded down to a granule).
  explicit BlockAllocator(uint64_t total_bytes);

  BlockAllocator(const BlockAllocator&) = delete;
  BlockAllocator& operator=(const BlockAllocator&) = delete;

  // `bytes` rounded up to a whole number of granules; 0 when that would overflow.
  static uint64_t RoundUp(uint64_t bytes);

  // Offset of a range of RoundUp(bytes) bytes, or nullopt when bytes is 0 or no free range is
  // large enough. Failure changes nothing.
  std::optional<uint64_t> Allocate(uint64_t bytes);

  // Returns a range obtained from Allocate(bytes) (same `bytes`, rounded or not). False, changing
  // nothing, when the range is misaligned, out of bounds or overlaps free space (a double free).
  // A range that is allocated but was not handed out with this offset and size is not detected:
  // the caller (the tier) records every range it owns.
  bool Free(uint64_t offset, uint64_t bytes);

  AllocatorStats Stats() const;
  uint64_t total_bytes() const { return total_; }

 private:
  void InsertFreeLocked(uint64_t offset, uint64_t length) REQUIRES(mu_);
  void EraseFreeLocked(std::map<uint64_t, uint64_t>::iterator it) REQUIRES(mu_);

  const uint64_t total_;
  mutable Mutex mu_{lock_order::kAllocator};
  std::map<uint64_t, uint64_t> by_offset_ GUARDED_BY(mu_);           // offset -> length
  std::set<std::pair<uint64_t, uint64_t>> by_size_ GUARDED_BY(mu_);  // (length, offset)
  uint64_t free_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t allocations_ GUARDED_BY(mu_) = 0;
};

}  // namespace kvstash::tiers
