// DramTier's reservation lifecycle: Reserve (with the evictions that make room), Commit, Abort,
// expiry, the quarantine of regions a writer may still write into (DramTierOptions::region_in_use,
// expired_quarantine_ms), and the parent-link bookkeeping that keeps a block from becoming its own
// ancestor. Lock order and the choices the header leaves open: dram_tier_impl.h.
#include "tiers/dram_tier_impl.h"

#include <string>
#include <utility>

namespace kvstash::tiers {

using dram_internal::kDefaultReservationTimeoutMs;
using dram_internal::ReservationState;
using dram_internal::SaturatingAdd;
using dram_internal::Shard;
using dram_internal::Entry;

void DramTier::Impl::CountParentLocked(const std::optional<BlockKey>& parent, int delta) {
  if (!parent) return;
  if (delta > 0) {
    ++named_parents[*parent];
  } else if (auto it = named_parents.find(*parent); it != named_parents.end() && --it->second == 0) {
    named_parents.erase(it);
  }
}

ParentLink DramTier::Impl::LinkOfLocked(const BlockKey& key) const {
  if (auto r = in_flight.find(key); r != in_flight.end()) return {true, r->second};
  const Shard& shard = ShardFor(key);
  ReaderLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  return it == shard.blocks.end() ? ParentLink{} : ParentLink{true, it->second.parent};
}

Status DramTier::Impl::CheckParentLocked(const BlockKey& key,
                                         const std::optional<BlockKey>& parent) const {
  if (!parent || *parent == key || !named_parents.contains(key)) return Status::Ok();
  const Ancestry ancestry = WouldBeOwnAncestor(key, parent, [&](const BlockKey& k) {
    write_mu.AssertHeld();  // called synchronously by the walk, under this function's write_mu
    return LinkOfLocked(k);
  });
  if (ancestry != Ancestry::kYes) return Status::Ok();
  return InvalidArgument("parent " + parent->ToHex() + " would make block " + key.ToHex() +
                         " its own ancestor: that parent descends from it (a parent cycle)");
}

OwnerUsage& DramTier::Impl::OwnerLocked(OwnerId owner) {
  OwnerUsage& u = owners[owner];
  u.owner = owner;
  return u;
}

bool DramTier::Impl::ProtectedLocked(OwnerId owner) const {
  if (owner == kNoOwner) return false;
  const uint64_t quota = QuotaOf(owner);
  if (quota == 0) return false;
  auto it = owners.find(owner);
  return it == owners.end() || it->second.bytes <= quota;
}

Status DramTier::Impl::MakeRoomInQuotaLocked(OwnerId owner, uint64_t alloc_bytes) {
  const uint64_t quota = QuotaOf(owner);
  if (quota == 0) return Status::Ok();
  OwnerUsage& u = OwnerLocked(owner);  // stays valid: owners never erases, rehashing keeps references
  if (alloc_bytes > quota) {
    ++u.quota_rejections;
    return ResourceExhausted("a block of " + std::to_string(alloc_bytes) +
                             " bytes exceeds the tenant's quota of " + std::to_string(quota) +
                             " bytes on this tier");
  }
  while (u.bytes + alloc_bytes > quota) {
    if (EvictOneLocked(VictimScope{.only_owner = owner, .requester = owner}) == 0) {
      ++u.quota_rejections;
      return ResourceExhausted("the tenant's quota of " + std::to_string(quota) + " bytes on this tier is full (" +
                               std::to_string(u.bytes) +
                               " bytes held) and none of its blocks is evictable: leased, pinned or reserved");
    }
  }
  return Status::Ok();
}

bool DramTier::Impl::RegionInUseLocked(uint64_t offset, uint64_t bytes) const {
  return options.region_in_use && options.region_in_use(offset, bytes);
}

void DramTier::Impl::DropReservationLocked(
    std::unordered_map<uint64_t, ReservationState>::iterator it, bool expired) {
  const ReservationState& r = it->second;
  const bool in_use = RegionInUseLocked(r.offset, r.alloc_bytes);
  if (in_use || (expired && options.expired_quarantine_ms > 0)) {
    const uint64_t delay = expired ? options.expired_quarantine_ms : 0;
    quarantine.push_back({r.offset, r.alloc_bytes, SaturatingAdd(Now(), delay), in_use});
    if (in_use) regions_held.fetch_add(1, std::memory_order_relaxed);
  } else {
    allocator.Free(r.offset, r.alloc_bytes);
    used_bytes.fetch_sub(r.alloc_bytes, std::memory_order_relaxed);
  }
  reserved_bytes.fetch_sub(r.alloc_bytes, std::memory_order_relaxed);
  reservation_count.fetch_sub(1, std::memory_order_relaxed);
  if (r.owner != kNoOwner) OwnerLocked(r.owner).bytes -= r.alloc_bytes;
  CountParentLocked(r.parent, -1);
  in_flight.erase(r.key);
  if (!r.committing) deadlines.erase({r.deadline_ms, it->first});
  reservations.erase(it);
}

void DramTier::Impl::ReleaseQuarantineLocked(uint64_t now) {
  for (auto it = quarantine.begin(); it != quarantine.end();) {
    if (it->release_at_ms > now) {
      ++it;
      continue;
    }
    const bool in_use = RegionInUseLocked(it->offset, it->alloc_bytes);
    if (in_use != it->held) {
      it->held = in_use;
      if (in_use) regions_held.fetch_add(1, std::memory_order_relaxed);
      else regions_held.fetch_sub(1, std::memory_order_relaxed);
    }
    if (in_use) {
      ++it;
      continue;
    }
    allocator.Free(it->offset, it->alloc_bytes);
    used_bytes.fetch_sub(it->alloc_bytes, std::memory_order_relaxed);
    it = quarantine.erase(it);
  }
}

size_t DramTier::Impl::ReclaimExpiredLocked() {
  const uint64_t now = Now();
  ReleaseQuarantineLocked(now);
  size_t reclaimed = 0;
  while (!deadlines.empty() && deadlines.begin()->first < now) {
    auto it = reservations.find(deadlines.begin()->second);
    if (it == reservations.end()) {  // defensive: the two indexes always agree
      deadlines.erase(deadlines.begin());
      continue;
    }
    DropReservationLocked(it, /*expired=*/true);
    ++reclaimed;
  }
  reservations_expired.fetch_add(reclaimed, std::memory_order_relaxed);
  return reclaimed;
}

Result<Reservation> DramTier::Reserve(const BlockKey& key, uint64_t size,
                                      const std::optional<BlockKey>& parent, uint64_t timeout_ms,
                                      OwnerId owner) {
  Impl& d = *impl_;
  if (size == 0 || size > d.options.max_block_bytes) {
    return InvalidArgument("block size " + std::to_string(size) + " outside [1, " +
                           std::to_string(d.options.max_block_bytes) + "]");
  }
  const uint64_t alloc_bytes = BlockAllocator::RoundUp(size);

  MutexLock write(d.write_mu);
  d.ReclaimExpiredLocked();
  if (d.IsCommitted(key)) return AlreadyExists("block " + key.ToHex() + " is already stored");
  if (d.in_flight.contains(key)) {
    return Aborted("another reservation for block " + key.ToHex() + " is in flight");
  }
  KVSTASH_RETURN_IF_ERROR(d.CheckParentLocked(key, parent));
  if (alloc_bytes > d.allocator.total_bytes()) {
    return ResourceExhausted("block of " + std::to_string(size) +
                             " bytes exceeds the tier's capacity");
  }

  d.DrainAccessesLocked();
  KVSTASH_RETURN_IF_ERROR(d.MakeRoomInQuotaLocked(owner, alloc_bytes));
  const Impl::VictimScope for_room{.only_owner = std::nullopt, .requester = owner};
  const double capacity = static_cast<double>(d.options.capacity_bytes);
  const auto used_after = [&] {
    return static_cast<double>(d.used_bytes.load(std::memory_order_relaxed) + alloc_bytes);
  };
  if (used_after() > d.options.high_watermark * capacity) {
    while (used_after() > d.options.low_watermark * capacity) {
      if (d.EvictOneLocked(for_room) == 0) break;
      d.evicted_capacity.fetch_add(1, std::memory_order_relaxed);
    }
  }

  std::optional<uint64_t> offset = d.allocator.Allocate(alloc_bytes);
  while (!offset) {
    if (d.EvictOneLocked(for_room) == 0) {
      if (owner != kNoOwner) ++d.OwnerLocked(owner).quota_rejections;
      return ResourceExhausted("no room for a " + std::to_string(size) +
                               "-byte block: nothing more is evictable");
    }
    d.evicted_fragmentation.fetch_add(1, std::memory_order_relaxed);
    offset = d.allocator.Allocate(alloc_bytes);
  }

  const uint64_t id = d.next_reservation_id++;
  ReservationState r;
  r.key = key;
  if (parent && *parent != key) r.parent = parent;
  r.offset = *offset;
  r.size = size;
  r.alloc_bytes = alloc_bytes;
  r.owner = owner;
  r.deadline_ms =
      SaturatingAdd(d.Now(), timeout_ms == 0 ? kDefaultReservationTimeoutMs : timeout_ms);
  d.reservations.emplace(id, r);
  d.deadlines.emplace(r.deadline_ms, id);
  d.in_flight.emplace(key, r.parent);
  d.CountParentLocked(r.parent, +1);  // the committed block keeps naming it; erasing it forgets
  d.used_bytes.fetch_add(alloc_bytes, std::memory_order_relaxed);
  d.reserved_bytes.fetch_add(alloc_bytes, std::memory_order_relaxed);
  d.reservation_count.fetch_add(1, std::memory_order_relaxed);
  if (owner != kNoOwner) d.OwnerLocked(owner).bytes += alloc_bytes;

  Reservation out;
  out.id = id;
  out.data = d.arena->base() + r.offset;
  out.size = size;
  out.deadline_ms = r.deadline_ms;
  out.key = r.key;
  out.parent = r.parent;
  out.owner = r.owner;
  return out;
}

Result<BlockMeta> DramTier::Commit(uint64_t reservation_id, uint64_t checksum, bool pin) {
  Impl& d = *impl_;
  const std::byte* data = nullptr;
  uint64_t size = 0;
  {
    MutexLock write(d.write_mu);
    auto it = d.reservations.find(reservation_id);
    if (it == d.reservations.end()) {
      return NotFound("reservation " + std::to_string(reservation_id) + " is unknown or expired");
    }
    ReservationState& r = it->second;
    if (r.committing) {
      return Aborted("reservation " + std::to_string(reservation_id) + " is being committed");
    }
    if (d.Now() > r.deadline_ms) {
      d.DropReservationLocked(it, /*expired=*/true);
      d.reservations_expired.fetch_add(1, std::memory_order_relaxed);
      return NotFound("reservation " + std::to_string(reservation_id) + " expired");
    }
    r.committing = true;
    d.deadlines.erase({r.deadline_ms, reservation_id});
    data = d.arena->base() + r.offset;
    size = r.size;
  }

  const Result<uint64_t> hashed = d.bytes.Checksum(data, size);

  MutexLock write(d.write_mu);
  auto it = d.reservations.find(reservation_id);  // `committing` kept everyone else off it
  ReservationState& r = it->second;
  r.committing = false;
  if (!hashed.ok()) {  // the reservation stays open, as after a mismatch
    d.deadlines.emplace(r.deadline_ms, reservation_id);
    return hashed.status();
  }
  const uint64_t actual = *hashed;
  if (actual != checksum) {
    d.deadlines.emplace(r.deadline_ms, reservation_id);
    d.checksum_mismatches.fetch_add(1, std::memory_order_relaxed);
    // The message never names `actual`: that would be a hash of bytes the caller may not have
    // written (a removed block's), to retry the commit with.
    return DataLoss("checksum mismatch for block " + r.key.ToHex() + ": the bytes do not hash to " +
                    std::to_string(checksum));
  }

  const uint64_t now = d.Now();
  const BlockKey key = r.key;
  Shard& shard = d.ShardFor(key);
  BlockMeta meta;
  {
    WriterLock lock(shard.mu);
    auto [eit, inserted] = shard.blocks.try_emplace(key);
    Entry& e = eit->second;
    e.offset = r.offset;
    e.size = r.size;
    e.alloc_bytes = r.alloc_bytes;
    e.checksum = checksum;
    e.parent = r.parent;
    e.generation = d.next_generation++;
    e.created_ms = now;
    e.owner = r.owner;
    e.pinned = pin;
    e.last_access_ms.store(now, std::memory_order_relaxed);
    meta = d.MetaOf(key, e);
  }
  d.policy->OnInsert(key, r.parent, r.size);
  if (pin) d.pinned_blocks.fetch_add(1, std::memory_order_relaxed);
  d.blocks.fetch_add(1, std::memory_order_relaxed);
  if (r.owner != kNoOwner) ++d.OwnerLocked(r.owner).blocks;  // its bytes were charged at Reserve
  d.reserved_bytes.fetch_sub(r.alloc_bytes, std::memory_order_relaxed);
  d.reservation_count.fetch_sub(1, std::memory_order_relaxed);
  d.in_flight.erase(key);
  d.reservations.erase(it);
  return meta;
}

Status DramTier::Abort(uint64_t reservation_id) {
  Impl& d = *impl_;
  MutexLock write(d.write_mu);
  auto it = d.reservations.find(reservation_id);
  if (it == d.reservations.end()) {
    return NotFound("reservation " + std::to_string(reservation_id) + " is unknown");
  }
  if (it->second.committing) {
    return Aborted("reservation " + std::to_string(reservation_id) + " is being committed");
  }
  d.DropReservationLocked(it);
  return Status::Ok();
}

Result<Reservation> DramTier::GetReservation(uint64_t reservation_id) const {
  Impl& d = *impl_;
  MutexLock write(d.write_mu);
  auto it = d.reservations.find(reservation_id);
  // An expired reservation is reported as gone even before ReclaimExpired returns its region.
  if (it == d.reservations.end() || d.Now() > it->second.deadline_ms) {
    return NotFound("reservation " + std::to_string(reservation_id) + " is unknown or expired");
  }
  Reservation out;
  out.id = reservation_id;
  out.data = d.arena->base() + it->second.offset;
  out.size = it->second.size;
  out.deadline_ms = it->second.deadline_ms;
  out.key = it->second.key;
  out.parent = it->second.parent;
  out.owner = it->second.owner;
  return out;
}

size_t DramTier::ReclaimExpired() {
  MutexLock write(impl_->write_mu);
  return impl_->ReclaimExpiredLocked();
}

}  // namespace kvstash::tiers
