// DramTier: blocks in one host-memory arena mapped at start (docs/ARCHITECTURE.md §3, tiers/).
//
// Memory: a single mmap of `capacity_bytes` (MAP_HUGETLB when huge_pages allows and the host has
// huge pages reserved, else plain pages with MADV_HUGEPAGE), carved by a BlockAllocator into
// 4 KiB-granular ranges for blocks of 1 B .. max_block_bytes.
//
// Capacity: when a reservation would lift used bytes above high_watermark * capacity, blocks are
// evicted (policy order, never leased, pinned or reserved ones) until used bytes fall to
// low_watermark * capacity or below, or nothing more is evictable.
//
// Parent links: Reserve refuses (INVALID_ARGUMENT) a parent that would make the block its own
// ancestor among committed and reserved blocks, checked within tiers/parent_walk.h's bound.
//
// Locking: the index is split into `index_shards` shards, each behind a std::shared_mutex. Reads
// (Find/Peek/Read/List) take only their shard's lock in shared mode plus a per-shard access buffer
// mutex — no global lock on the read path. Writers (Reserve/Commit/Abort/Remove/eviction) take the
// policy mutex, then shard locks exclusively; the allocator has its own mutex, always innermost.
// Accesses reach the eviction policy through the per-shard buffers, drained under the policy
// mutex before each eviction decision.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/enum_names.h"
#include "tiers/byte_access.h"
#include "tiers/eviction_policy.h"
#include "tiers/owner_quotas.h"
#include "tiers/tier.h"

namespace kvstash::tiers {

// Whether the arena is mapped on huge pages: kAuto when the host has them reserved, kOn or fail,
// kOff never.
enum class HugePages { kAuto, kOn, kOff };
inline constexpr settings::EnumName<HugePages> kHugePagesNames[] = {
    {HugePages::kAuto, "auto"}, {HugePages::kOn, "on"}, {HugePages::kOff, "off"}};
inline std::string_view Name(HugePages value) { return settings::EnumToName(std::span(kHugePagesNames), value); }

struct DramTierOptions {
  uint64_t capacity_bytes = 1ULL << 30;    // 1 GiB
  double high_watermark = 0.95;            // start evicting above this fraction of capacity
  double low_watermark = 0.85;             // evict down to this fraction
  uint64_t max_block_bytes = 64ULL << 20;  // 64 MiB
  EvictionPolicyKind eviction_policy = EvictionPolicyKind::kPrefixArc;
  // The SSD tier below, when this tier's victims are demoted to one: told to the eviction policy
  // (EvictionPolicy::SetLowerTier), so "prefix-arc" weighs the system's hits, not only DRAM's.
  // The TierManager sets it.
  std::optional<EvictionPolicy::LowerTier> lower_tier;
  HugePages huge_pages = HugePages::kAuto; // kOn fails Create() when huge pages are unavailable
  size_t index_shards = 64;
  const Clock* clock = SteadyClock::Default();
  // Called for every block evicted to make room (never for Remove), with its metadata and bytes,
  // before the bytes are freed. Runs under the tier's policy mutex and the block's shard lock, so
  // it must neither block nor call back into this tier; it copies what it keeps. Used by the
  // TierManager to demote victims to SSD.
  std::function<void(const BlockMeta&, std::span<const std::byte>)> on_evict;
  // When set, the tier carves this memory (capacity_bytes of it) instead of mapping its own arena;
  // huge_pages is then ignored. The memory must outlive the tier. The daemon passes memory UCX
  // allocated, so that peers on the same host can map it and read it with their own CPU.
  std::byte* external_arena = nullptr;
  // How long the region of an expired (never committed, never aborted) reservation stays out of
  // use before it is reused: a writer that outlived its reservation may still be writing into it
  // one-sided. 0 = reuse at once. The daemon sets it to the reservation timeout.
  uint64_t expired_quarantine_ms = 0;
  // Whether something may still write into the arena's [offset, offset + bytes) — the daemon's
  // answer is whether a UCX receive posted there has not completed yet (a receive UCX has matched
  // cannot be cancelled; its bytes keep landing as long as the peer sends). Consulted whenever a
  // reservation's region would go back to the allocator, on Abort and on expiry: while it answers
  // true the region stays quarantined, is asked again on every reclaim pass (each Reserve and
  // ReclaimExpired), and returns to the allocator only once it answers false (and, after an
  // expiry, expired_quarantine_ms has also passed). Never called for a committed block's region.
  // Runs under the tier's policy mutex: it must be quick, must not call back into this tier and may
  // take only leaf locks (lock_order::kReceiveRanges). Unset: nothing writes behind the tier's back.
  std::function<bool(uint64_t offset, uint64_t bytes)> region_in_use;
  // How the tier's code touches block bytes (Read's copy, Commit's hash, on_evict's bytes).
  // nullptr = HostByteAccess(). An implementation that is not host_addressable (device memory)
  // requires external_arena; on_evict then receives a host copy of the victim's bytes, and a victim
  // whose copy fails is evicted without calling on_evict. Must outlive the tier.
  const ByteAccess* byte_access = nullptr;
  // What kind() and every BlockMeta::tier report: kDram, or kHbm for a tier over GPU memory.
  TierKind tier_kind = TierKind::kDram;
  // Each owner's quota of this tier (tiers/owner_quotas.h); nullptr = none, every owner unlimited
  // (owners are still accounted). Not owned; must outlive the tier.
  const OwnerQuotas* quotas = nullptr;
};

class DramTier final : public Tier {
 public:
  // INVALID_ARGUMENT for inconsistent options; RESOURCE_EXHAUSTED when the arena cannot be mapped.
  static Result<std::unique_ptr<DramTier>> Create(const DramTierOptions& options);
  ~DramTier() override;

  TierKind kind() const override;
  Result<Reservation> Reserve(const BlockKey& key, uint64_t size, const std::optional<BlockKey>& parent,
                              uint64_t timeout_ms, OwnerId owner = kNoOwner) override;
  Result<BlockMeta> Commit(uint64_t reservation_id, uint64_t checksum, bool pin) override;
  Status Abort(uint64_t reservation_id) override;
  Result<Reservation> GetReservation(uint64_t reservation_id) const override;
  std::optional<BlockMeta> Find(const BlockKey& key, uint64_t lease_ms) override;
  Status ReleaseLease(const BlockKey& key, uint64_t lease_epoch) override;
  std::optional<BlockMeta> Peek(const BlockKey& key) const override;
  Result<BlockMeta> Read(const BlockKey& key, std::span<std::byte> out) override;
  Status Remove(const BlockKey& key) override;
  Status SetPinned(const BlockKey& key, bool pinned) override;
  Status Advise(const BlockKey& key, ReuseAdvice advice) override;
  ListPage List(const std::optional<BlockKey>& after, size_t limit) const override;
  // The `n` resident blocks with the most hits, most first (admin: scans every shard, holding
  // each one's lock shared in turn).
  std::vector<BlockMeta> Hottest(size_t n) const;
  size_t ReclaimExpired() override;
  TierUsage Usage() const override;
  TierCounters Counters() const override;
  // What each owner holds here and its counters, by owner (takes the policy mutex).
  std::vector<OwnerUsage> OwnerUsages() const;

  // The arena, for registration with a transport (UCX) in the data-plane issue.
  std::byte* arena_base() const;
  uint64_t arena_bytes() const;
  bool huge_pages_active() const;
  std::string_view policy_name() const;

 private:
  struct Impl;
  explicit DramTier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::tiers
