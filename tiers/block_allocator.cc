#include "tiers/block_allocator.h"

#include <iterator>
#include <limits>

namespace kvstash::tiers {

BlockAllocator::BlockAllocator(uint64_t total_bytes) : total_(total_bytes / kGranule * kGranule) {
  MutexLock lock(mu_);  // uncontended; keeps the analysis' rule without an exception
  if (total_ > 0) InsertFreeLocked(0, total_);
}

uint64_t BlockAllocator::RoundUp(uint64_t bytes) {
  if (bytes > std::numeric_limits<uint64_t>::max() - (kGranule - 1)) return 0;
  return (bytes + kGranule - 1) / kGranule * kGranule;
}

void BlockAllocator::InsertFreeLocked(uint64_t offset, uint64_t length) {
  by_offset_.emplace(offset, length);
  by_size_.emplace(length, offset);
  free_bytes_ += length;
}

void BlockAllocator::EraseFreeLocked(std::map<uint64_t, uint64_t>::iterator it) {
  by_size_.erase({it->second, it->first});
  free_bytes_ -= it->second;
  by_offset_.erase(it);
}

std::optional<uint64_t> BlockAllocator::Allocate(uint64_t bytes) {
  const uint64_t length = RoundUp(bytes);
  if (length == 0) return std::nullopt;
  MutexLock lock(mu_);
  auto fit = by_size_.lower_bound({length, 0});
  if (fit == by_size_.end()) return std::nullopt;
  const auto [range_len, range_off] = *fit;
  EraseFreeLocked(by_offset_.find(range_off));
  if (range_len > length) InsertFreeLocked(range_off + length, range_len - length);
  ++allocations_;
  return range_off;
}

bool BlockAllocator::Free(uint64_t offset, uint64_t bytes) {
  uint64_t length = RoundUp(bytes);
  if (length == 0 || offset % kGranule != 0 || offset > total_ || length > total_ - offset) {
    return false;
  }
  MutexLock lock(mu_);
  if (allocations_ == 0) return false;
  auto next = by_offset_.lower_bound(offset);
  if (next != by_offset_.end() && next->first < offset + length) return false;
  if (next != by_offset_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second > offset) return false;
    if (prev->first + prev->second == offset) {
      offset = prev->first;
      length += prev->second;
      EraseFreeLocked(prev);
    }
  }
  if (next != by_offset_.end() && next->first == offset + length) {
    length += next->second;
    EraseFreeLocked(next);
  }
  InsertFreeLocked(offset, length);
  --allocations_;
  return true;
}

AllocatorStats BlockAllocator::Stats() const {
  MutexLock lock(mu_);
  AllocatorStats s;
  s.total_bytes = total_;
  s.free_bytes = free_bytes_;
  s.allocated_bytes = total_ - free_bytes_;
  s.largest_free_bytes = by_size_.empty() ? 0 : by_size_.rbegin()->first;
  s.free_ranges = by_offset_.size();
  s.allocations = allocations_;
  s.fragmentation = free_bytes_ == 0 ? 0.0
                                     : 1.0 - static_cast<double>(s.largest_free_bytes) /
                                                 static_cast<double>(free_bytes_);
  return s;
}

}  // namespace kvstash::tiers
