// Arena: one anonymous memory mapping made at start and released in the destructor. The DRAM
// tier carves it into blocks with a BlockAllocator; the transport registers it once.
//
// Huge pages: kRequire maps with MAP_HUGETLB and fails when the host has none reserved; kPrefer
// tries MAP_HUGETLB and falls back to plain pages advised with MADV_HUGEPAGE (transparent huge
// pages, best effort); kNever maps plain pages without advice.
//
// Thread-safety: immutable after Map(); every accessor may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "kvstash/result.h"

namespace kvstash::tiers {

enum class ArenaHugePages { kPrefer, kRequire, kNever };

class Arena {
 public:
  // Maps `bytes` (> 0) of private anonymous memory. INVALID_ARGUMENT for 0 bytes;
  // RESOURCE_EXHAUSTED when the mapping fails (for kRequire: when huge pages are unavailable).
  static Result<std::unique_ptr<Arena>> Map(uint64_t bytes, ArenaHugePages mode);
  // Uses memory someone else owns (for example memory a transport allocated so that peers can
  // map it); the arena neither maps nor unmaps it. REQUIRES: base != nullptr, bytes > 0, and the
  // memory outlives the arena.
  static std::unique_ptr<Arena> Wrap(std::byte* base, uint64_t bytes);
  ~Arena();

  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  std::byte* base() const { return base_; }
  uint64_t size() const { return size_; }  // usable bytes, as requested
  // True when the arena is backed by MAP_HUGETLB pages.
  bool huge_pages_active() const { return hugetlb_; }
  // True when plain pages were advised with MADV_HUGEPAGE and the kernel accepted the advice.
  bool transparent_huge_pages_advised() const { return thp_advised_; }

 private:
  Arena(std::byte* base, uint64_t size, uint64_t mapped, bool hugetlb, bool thp)
      : base_(base), size_(size), mapped_(mapped), hugetlb_(hugetlb), thp_advised_(thp) {}

  std::byte* base_;
  uint64_t size_;
  uint64_t mapped_;  // length passed to mmap (rounded up to the huge page size for MAP_HUGETLB); 0 = not ours
  bool hugetlb_;
  bool thp_advised_;
};

// Makes every page of [base, base + bytes) resident now, so that puts do not pay the kernel's
// first-touch fault and page clearing later (measured: most of a fresh daemon's CPU time during
// 1 MiB puts over tcp). Contents are unchanged (an atomic OR of 0 into one byte per 4 KiB).
// Spreads the work over `threads` threads; returns once every page is touched.
void PrefaultMemory(std::byte* base, uint64_t bytes, unsigned threads);

}  // namespace kvstash::tiers
