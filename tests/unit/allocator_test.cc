// BlockAllocator: rounding, best fit, coalescing, exhaustion, double-free detection and stats.
#include <gtest/gtest.h>

#include <iterator>
#include <map>
#include <random>
#include <vector>

#include "tiers/block_allocator.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kG = BlockAllocator::kGranule;

TEST(BlockAllocatorTest, RoundsToGranules) {
  EXPECT_EQ(BlockAllocator::RoundUp(1), kG);
  EXPECT_EQ(BlockAllocator::RoundUp(kG), kG);
  EXPECT_EQ(BlockAllocator::RoundUp(kG + 1), 2 * kG);
  EXPECT_EQ(BlockAllocator::RoundUp(~0ULL), 0u);

  BlockAllocator a(10 * kG + 123);  // rounded down to whole granules
  EXPECT_EQ(a.total_bytes(), 10 * kG);
  auto off = a.Allocate(1);
  ASSERT_TRUE(off);
  EXPECT_EQ(*off % kG, 0u);
  EXPECT_EQ(a.Stats().allocated_bytes, kG);
}

TEST(BlockAllocatorTest, AllocFreeRoundTripRestoresOneRange) {
  BlockAllocator a(64 * kG);
  std::vector<uint64_t> offs;
  for (int i = 0; i < 16; ++i) {
    auto off = a.Allocate(3 * kG);
    ASSERT_TRUE(off);
    offs.push_back(*off);
  }
  EXPECT_EQ(a.Stats().allocations, 16u);
  EXPECT_EQ(a.Stats().free_bytes, 16 * kG);
  for (uint64_t off : offs) EXPECT_TRUE(a.Free(off, 3 * kG));
  const AllocatorStats s = a.Stats();
  EXPECT_EQ(s.free_bytes, 64 * kG);
  EXPECT_EQ(s.free_ranges, 1u);
  EXPECT_EQ(s.largest_free_bytes, 64 * kG);
  EXPECT_EQ(s.allocations, 0u);
  EXPECT_DOUBLE_EQ(s.fragmentation, 0.0);
}

TEST(BlockAllocatorTest, CoalescesWithBothNeighbours) {
  BlockAllocator a(3 * kG);
  auto x = a.Allocate(kG), y = a.Allocate(kG), z = a.Allocate(kG);
  ASSERT_TRUE(x && y && z);
  ASSERT_TRUE(a.Free(*x, kG));
  ASSERT_TRUE(a.Free(*z, kG));
  EXPECT_EQ(a.Stats().free_ranges, 2u);
  EXPECT_FALSE(a.Allocate(2 * kG));  // 2 granules free, but not contiguous
  ASSERT_TRUE(a.Free(*y, kG));       // joins left and right
  EXPECT_EQ(a.Stats().free_ranges, 1u);
  EXPECT_TRUE(a.Allocate(3 * kG));
}

TEST(BlockAllocatorTest, BestFitPicksSmallestHole) {
  BlockAllocator a(20 * kG);
  auto a1 = a.Allocate(4 * kG);  // [0,4)
  auto s1 = a.Allocate(kG);      // [4,5) separator
  auto a2 = a.Allocate(2 * kG);  // [5,7)
  auto s2 = a.Allocate(kG);      // [7,8) separator; [8,20) stays free
  ASSERT_TRUE(a1 && s1 && a2 && s2);
  ASSERT_TRUE(a.Free(*a1, 4 * kG));
  ASSERT_TRUE(a.Free(*a2, 2 * kG));
  auto got = a.Allocate(2 * kG);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, *a2);  // the 2-granule hole, not the 4-granule one nor the tail
  got = a.Allocate(3 * kG);
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, *a1);
}

TEST(BlockAllocatorTest, ExhaustionFailsWithoutChange) {
  BlockAllocator a(8 * kG);
  ASSERT_TRUE(a.Allocate(8 * kG));
  const AllocatorStats before = a.Stats();
  EXPECT_FALSE(a.Allocate(1));
  EXPECT_FALSE(a.Allocate(0));
  const AllocatorStats after = a.Stats();
  EXPECT_EQ(before.free_bytes, after.free_bytes);
  EXPECT_EQ(before.allocations, after.allocations);
  EXPECT_EQ(after.free_bytes, 0u);
  EXPECT_DOUBLE_EQ(after.fragmentation, 0.0);
  EXPECT_FALSE(BlockAllocator(8 * kG).Allocate(9 * kG));
}

TEST(BlockAllocatorTest, RejectsBadFrees) {
  BlockAllocator a(8 * kG);
  auto x = a.Allocate(2 * kG);
  ASSERT_TRUE(x);
  EXPECT_FALSE(a.Free(*x + 1, kG));  // misaligned
  EXPECT_FALSE(a.Free(8 * kG, kG));  // out of bounds
  EXPECT_FALSE(a.Free(6 * kG, kG));  // already free
  ASSERT_TRUE(a.Free(*x, 2 * kG));
  EXPECT_FALSE(a.Free(*x, 2 * kG));  // double free
  EXPECT_EQ(a.Stats().free_bytes, 8 * kG);
}

TEST(BlockAllocatorTest, FragmentationStats) {
  BlockAllocator a(10 * kG);
  std::vector<uint64_t> offs;
  for (int i = 0; i < 10; ++i) offs.push_back(*a.Allocate(kG));
  for (int i = 0; i < 10; i += 2) ASSERT_TRUE(a.Free(offs[i], kG));  // five isolated holes
  AllocatorStats s = a.Stats();
  EXPECT_EQ(s.free_bytes, 5 * kG);
  EXPECT_EQ(s.free_ranges, 5u);
  EXPECT_EQ(s.largest_free_bytes, kG);
  EXPECT_DOUBLE_EQ(s.fragmentation, 1.0 - 1.0 / 5.0);
  ASSERT_TRUE(a.Free(offs[1], kG));  // joins holes 0 and 2
  s = a.Stats();
  EXPECT_EQ(s.free_ranges, 4u);
  EXPECT_EQ(s.largest_free_bytes, 3 * kG);
  EXPECT_DOUBLE_EQ(s.fragmentation, 1.0 - 3.0 / 6.0);
}

// Every range handed out lies inside the arena, starts on a granule and overlaps no live range
// (checked against both neighbours at each allocation, and over the whole live set every 1000 steps);
// the stats follow the live set; freeing everything gives back one range of the whole arena.
TEST(BlockAllocatorTest, RandomChurnKeepsInvariants) {
  const uint64_t total = 4096 * kG;
  BlockAllocator a(total);
  std::mt19937_64 rng(7);
  std::vector<std::pair<uint64_t, uint64_t>> live;
  std::map<uint64_t, uint64_t> live_ranges;  // offset -> rounded size
  uint64_t live_bytes = 0;
  const auto check_no_overlap = [&](uint64_t off, uint64_t bytes) {
    ASSERT_EQ(off % kG, 0u) << "offset " << off << " is not on a granule";
    ASSERT_LE(off + bytes, total) << "range [" << off << ", " << off + bytes << ") leaves the arena";
    auto next = live_ranges.lower_bound(off);
    if (next != live_ranges.end()) {
      ASSERT_LE(off + bytes, next->first)
          << "[" << off << ", " << off + bytes << ") overlaps the live range at " << next->first;
    }
    if (next != live_ranges.begin()) {
      auto prev = std::prev(next);
      ASSERT_LE(prev->first + prev->second, off)
          << "[" << off << ", " << off + bytes << ") overlaps the live range [" << prev->first << ", "
          << prev->first + prev->second << ")";
    }
  };
  for (int i = 0; i < 20000; ++i) {
    if (!live.empty() && (rng() % 2 == 0)) {
      const size_t idx = rng() % live.size();
      ASSERT_TRUE(a.Free(live[idx].first, live[idx].second));
      live_bytes -= BlockAllocator::RoundUp(live[idx].second);
      ASSERT_EQ(live_ranges.erase(live[idx].first), 1u);
      live[idx] = live.back();
      live.pop_back();
    } else {
      const uint64_t size = 1 + rng() % (32 * kG);
      if (auto off = a.Allocate(size)) {
        const uint64_t bytes = BlockAllocator::RoundUp(size);
        ASSERT_NO_FATAL_FAILURE(check_no_overlap(*off, bytes));
        live_ranges.emplace(*off, bytes);
        live.emplace_back(*off, size);
        live_bytes += bytes;
      }
    }
    const AllocatorStats s = a.Stats();
    ASSERT_EQ(s.allocated_bytes, live_bytes);
    ASSERT_EQ(s.allocations, live.size());
    ASSERT_LE(s.largest_free_bytes, s.free_bytes);
    ASSERT_EQ(s.free_bytes + s.allocated_bytes, total);
    if (i % 1000 == 0) {
      uint64_t end = 0;
      for (const auto& [off, bytes] : live_ranges) {
        ASSERT_GE(off, end) << "live ranges overlap at " << off;
        end = off + bytes;
      }
      ASSERT_LE(end, total);
    }
  }
  for (auto& [off, size] : live) ASSERT_TRUE(a.Free(off, size));
  EXPECT_EQ(a.Stats().free_ranges, 1u);
  EXPECT_EQ(a.Stats().free_bytes, total);
}

}  // namespace
}  // namespace kvstash::tiers
