// DramTier's eviction and erasure: the policy picks a victim among blocks neither pinned nor
// leased, on_evict sees its bytes (a host copy for device memory) before they are freed; Remove
// erases on request; Advise passes reuse advice to the policy. Lock order: dram_tier_impl.h.
#include "tiers/dram_tier_impl.h"

#include <span>
#include <string>
#include <vector>

namespace kvstash::tiers {

using dram_internal::Shard;

bool DramTier::Impl::InScopeLocked(const VictimScope& scope, OwnerId owner) const {
  if (scope.only_owner) return owner == *scope.only_owner;
  return owner == scope.requester || !ProtectedLocked(owner);
}

uint64_t DramTier::Impl::EvictOneLocked(const VictimScope& scope) {
  const uint64_t now = Now();
  for (;;) {
    std::optional<BlockKey> victim = policy->PickVictim([&](const BlockKey& key) {
      write_mu.AssertHeld();  // called synchronously by PickVictim, under this function's write_mu
      const Shard& shard = ShardFor(key);
      ReaderLock lock(shard.mu);
      auto it = shard.blocks.find(key);
      return it != shard.blocks.end() && EvictableNow(it->second, now) && InScopeLocked(scope, it->second.owner);
    });
    if (!victim) return 0;
    Shard& shard = ShardFor(*victim);
    WriterLock lock(shard.mu);
    auto it = shard.blocks.find(*victim);
    if (it == shard.blocks.end()) {
      policy->OnErase(*victim);  // cannot happen while write_mu is held; keep the policy honest
      continue;
    }
    // A reader may have leased it between the check and this exclusive lock; then pick again
    // (the policy's predicate now answers false for it).
    if (!EvictableNow(it->second, Now())) continue;
    const uint64_t freed = it->second.alloc_bytes;
    if (it->second.owner != kNoOwner) ++OwnerLocked(it->second.owner).evictions;
    if (options.on_evict) {
      const std::byte* data = arena->base() + it->second.offset;
      if (bytes.host_addressable()) {
        options.on_evict(MetaOf(*victim, it->second), std::span<const std::byte>(data, it->second.size));
      } else {
        // Device memory: the hook gets a host copy; a victim that cannot be copied is dropped.
        std::vector<std::byte> copy(it->second.size);
        if (bytes.CopyOut(copy.data(), data, copy.size()).ok()) {
          options.on_evict(MetaOf(*victim, it->second), std::span<const std::byte>(copy));
        }
      }
    }
    EraseBlockLocked(shard, it);
    evicted_bytes.fetch_add(freed, std::memory_order_relaxed);
    return freed;
  }
}

void DramTier::Impl::EraseBlockLocked(Shard& shard, BlockIndex::iterator it) {
  const BlockKey key = it->first;
  CountParentLocked(it->second.parent, -1);
  allocator.Free(it->second.offset, it->second.alloc_bytes);
  used_bytes.fetch_sub(it->second.alloc_bytes, std::memory_order_relaxed);
  if (it->second.owner != kNoOwner) {
    OwnerUsage& u = OwnerLocked(it->second.owner);
    u.bytes -= it->second.alloc_bytes;
    --u.blocks;
  }
  if (it->second.pinned) pinned_blocks.fetch_sub(1, std::memory_order_relaxed);
  blocks.fetch_sub(1, std::memory_order_relaxed);
  shard.blocks.erase(it);
  policy->OnErase(key);
}

Status DramTier::Remove(const BlockKey& key) {
  Impl& d = *impl_;
  MutexLock write(d.write_mu);
  Shard& shard = d.ShardFor(key);
  WriterLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return NotFound("block " + key.ToHex() + " is not stored");
  const uint64_t lease = it->second.lease_until_ms.load(std::memory_order_acquire);
  const uint64_t now = d.Now();
  if (lease > now) {
    return FailedPrecondition("block " + key.ToHex() + " is leased for another " +
                              std::to_string(lease - now) + " ms");
  }
  d.EraseBlockLocked(shard, it);
  return Status::Ok();
}

Status DramTier::Advise(const BlockKey& key, ReuseAdvice advice) {
  Impl& d = *impl_;
  MutexLock write_lock(d.write_mu);
  {
    const Shard& shard = d.ShardFor(key);
    ReaderLock lock(shard.mu);
    if (!shard.blocks.contains(key)) return NotFound("block " + key.ToHex() + " is not stored");
  }
  d.DrainAccessesLocked();  // reads that came first reach the policy first
  d.policy->OnAdvise(key, advice);
  return Status::Ok();
}

}  // namespace kvstash::tiers
