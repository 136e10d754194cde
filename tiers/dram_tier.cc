// DramTier: creation, usage, counters and accessors. The contract is in dram_tier.h; the lock
// order, the split of the implementation over files and the choices the header leaves open are in
// dram_tier_impl.h.
#include "tiers/dram_tier_impl.h"

#include <algorithm>
#include <string>
#include <utility>

namespace kvstash::tiers {

using dram_internal::Entry;
using dram_internal::Shard;

Result<std::unique_ptr<DramTier>> DramTier::Create(const DramTierOptions& options) {
  const DramTierOptions& o = options;
  if (!(o.low_watermark > 0.0) || !(o.low_watermark <= o.high_watermark) ||
      !(o.high_watermark <= 1.0)) {
    return InvalidArgument(
        "watermarks must satisfy 0 < low <= high <= 1 (low=" + std::to_string(o.low_watermark) +
        ", high=" + std::to_string(o.high_watermark) + ")");
  }
  if (o.capacity_bytes < BlockAllocator::kGranule) {
    return InvalidArgument("capacity_bytes must be at least 4096, got " +
                           std::to_string(o.capacity_bytes));
  }
  if (o.max_block_bytes == 0) return InvalidArgument("max_block_bytes must be > 0");
  if (o.index_shards == 0) return InvalidArgument("index_shards must be > 0");
  if (o.clock == nullptr) return InvalidArgument("clock must not be null");
  if (o.tier_kind == TierKind::kSsd) return InvalidArgument("tier_kind must be dram or hbm");
  if (o.byte_access != nullptr && !o.byte_access->host_addressable() && o.external_arena == nullptr) {
    return InvalidArgument("memory the CPU cannot address needs external_arena");
  }
  std::unique_ptr<EvictionPolicy> policy = MakeEvictionPolicy(o.eviction_policy);
  if (o.lower_tier) policy->SetLowerTier(*o.lower_tier);

  ArenaHugePages mode = ArenaHugePages::kPrefer;
  if (o.huge_pages == HugePages::kOn) mode = ArenaHugePages::kRequire;
  if (o.huge_pages == HugePages::kOff) mode = ArenaHugePages::kNever;
  std::unique_ptr<Arena> arena;
  if (o.external_arena != nullptr) {
    arena = Arena::Wrap(o.external_arena, o.capacity_bytes);
  } else {
    KVSTASH_ASSIGN_OR_RETURN(arena, Arena::Map(o.capacity_bytes, mode));
  }

  auto impl = std::make_unique<Impl>(o, std::move(arena), std::move(policy));
  return std::unique_ptr<DramTier>(new DramTier(std::move(impl)));
}

DramTier::DramTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DramTier::~DramTier() = default;

BlockMeta DramTier::Impl::MetaOf(const BlockKey& key, const Entry& e) const {
  BlockMeta m;
  m.key = key;
  m.tier = options.tier_kind;
  m.size = e.size;
  m.checksum = e.checksum;
  m.parent = e.parent;
  m.generation = e.generation;
  m.pinned = e.pinned;
  m.lease_until_ms = e.lease_until_ms.load(std::memory_order_acquire);
  m.created_ms = e.created_ms;
  m.last_access_ms = e.last_access_ms.load(std::memory_order_relaxed);
  m.hits = e.hits.load(std::memory_order_relaxed);
  m.owner = e.owner;
  m.data = arena->base() + e.offset;
  return m;
}

// Cost: lease state depends on the time of the call, so leased blocks are counted by a scan of
// every shard under its shared lock (O(n)); the other figures are counters.
TierUsage DramTier::Usage() const {
  const Impl& d = *impl_;
  TierUsage u;
  u.capacity_bytes = d.options.capacity_bytes;
  u.used_bytes = d.used_bytes.load(std::memory_order_relaxed);
  u.reserved_bytes = d.reserved_bytes.load(std::memory_order_relaxed);
  u.blocks = d.blocks.load(std::memory_order_relaxed);
  u.reservations = d.reservation_count.load(std::memory_order_relaxed);
  u.pinned_blocks = d.pinned_blocks.load(std::memory_order_relaxed);
  const uint64_t now = d.Now();
  for (const Shard& shard : d.shards) {
    ReaderLock lock(shard.mu);
    for (const auto& [key, entry] : shard.blocks) {
      if (entry.lease_until_ms.load(std::memory_order_relaxed) > now) ++u.leased_blocks;
    }
  }
  return u;
}

TierCounters DramTier::Counters() const {
  const Impl& d = *impl_;
  TierCounters c;
  c.evicted_capacity = d.evicted_capacity.load(std::memory_order_relaxed);
  c.evicted_fragmentation = d.evicted_fragmentation.load(std::memory_order_relaxed);
  c.evicted_bytes = d.evicted_bytes.load(std::memory_order_relaxed);
  c.reservations_expired = d.reservations_expired.load(std::memory_order_relaxed);
  c.checksum_mismatches = d.checksum_mismatches.load(std::memory_order_relaxed);
  c.regions_held_for_late_writes = d.regions_held.load(std::memory_order_relaxed);
  return c;
}

std::vector<OwnerUsage> DramTier::OwnerUsages() const {
  Impl& d = *impl_;
  MutexLock write(d.write_mu);
  std::vector<OwnerUsage> out;
  out.reserve(d.owners.size());
  for (const auto& [owner, usage] : d.owners) out.push_back(usage);
  std::sort(out.begin(), out.end(), [](const OwnerUsage& a, const OwnerUsage& b) { return a.owner < b.owner; });
  return out;
}

TierKind DramTier::kind() const { return impl_->options.tier_kind; }
std::byte* DramTier::arena_base() const { return impl_->arena->base(); }
uint64_t DramTier::arena_bytes() const { return impl_->arena->size(); }
bool DramTier::huge_pages_active() const { return impl_->arena->huge_pages_active(); }
std::string_view DramTier::policy_name() const { return impl_->policy_name; }

}  // namespace kvstash::tiers
