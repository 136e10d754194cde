// DramTier's internals, shared by its implementation files (contract in tiers/dram_tier.h):
//   dram_tier.cc               Create, usage, counters and accessors
//   dram_tier_reservations.cc  the reservation lifecycle: Reserve, Commit, Abort, expiry, the
//                              quarantine of regions a writer may still write into, parent links
//   dram_tier_index.cc         lookups over the sharded index: Find, leases, Peek, Read, pins,
//                              List, Hottest, and the access buffers that feed the policy
//   dram_tier_eviction.cc      eviction and erasure: picking victims, on_evict, Remove, Advise
//
// Lock order:
//
//   write_mu (the "policy mutex": policy, reservations, in-flight keys)
//     -> shard.mu (exclusive for writers, shared for readers)
//        -> shard.access_mu (leaf; readers append, writers drain)
//     -> BlockAllocator's own mutex (innermost)
//
// Readers never take write_mu. Lease, last-access and hit fields are atomics so Find/Read update
// them under the shard lock held shared; an evictor re-checks evictability under the shard lock
// held exclusively, when no reader can be extending a lease.
//
// Commit hashes the reservation's bytes outside write_mu: the reservation is marked
// `committing`, which keeps Abort, ReclaimExpired and a second Commit off it meanwhile.
//
// Choices the header leaves open:
//  * timeout_ms == 0 on Reserve means kDefaultReservationTimeoutMs;
//  * a reservation is expired once now > deadline_ms; a Commit that started hashing before then
//    completes;
//  * a Reserve that ends in RESOURCE_EXHAUSTED may already have evicted blocks on the way (cache
//    contents only; no reservation or block becomes inconsistent);
//  * List(after, 0) returns an empty page whose next_after is `after` when keys remain after it;
//  * parent links (tiers/parent_walk.h): Reserve refuses, with INVALID_ARGUMENT and before it
//    evicts anything, a parent link that would make the block its own ancestor among committed and
//    reserved blocks. The walk runs only when a committed or reserved block already names the new
//    key as its parent (`named_parents`), and follows at most kMaxParentWalk links: a link it
//    cannot clear within them is accepted, and the prefix policies, which check resident links
//    themselves, keep it out of their forest. A self link is dropped, as before.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "tiers/arena.h"
#include "tiers/block_allocator.h"
#include "tiers/dram_tier.h"
#include "tiers/eviction_policy.h"
#include "tiers/parent_walk.h"

namespace kvstash::tiers {
namespace dram_internal {

constexpr uint64_t kDefaultReservationTimeoutMs = 30'000;
// Accesses buffered per shard between drains; beyond this, accesses are dropped (the policy then
// sees a sample of recency, which is all LRU-like policies need).
constexpr size_t kAccessBufferCapacity = 4096;

inline uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

inline void AtomicMax(std::atomic<uint64_t>& target, uint64_t value) {
  uint64_t seen = target.load(std::memory_order_relaxed);
  while (seen < value && !target.compare_exchange_weak(seen, value, std::memory_order_acq_rel)) {
  }
}

struct Entry {
  uint64_t offset = 0;       // into the arena
  uint64_t size = 0;         // as committed
  uint64_t alloc_bytes = 0;  // as allocated (rounded)
  uint64_t checksum = 0;
  std::optional<BlockKey> parent;
  uint64_t generation = 0;
  uint64_t created_ms = 0;
  OwnerId owner = kNoOwner;
  bool pinned = false;  // written under the shard lock held exclusively
  std::atomic<uint64_t> lease_until_ms{0};  // written under lease_mu; read lock-free
  Mutex lease_mu;                            // leaf lock
  uint64_t lease_holders GUARDED_BY(lease_mu) = 0;  // readers that leased it in the current epoch
  uint64_t lease_epoch GUARDED_BY(lease_mu) = 0;    // bumped whenever a lease starts from none
  std::atomic<uint64_t> last_access_ms{0};
  std::atomic<uint64_t> hits{0};
};

struct Shard {
  mutable SharedMutex mu;
  std::unordered_map<BlockKey, Entry, BlockKeyHash> blocks GUARDED_BY(mu);

  mutable Mutex access_mu;
  std::vector<BlockKey> accesses GUARDED_BY(access_mu);
  std::atomic<bool> has_accesses{false};
};

struct ReservationState {
  BlockKey key;
  std::optional<BlockKey> parent;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t alloc_bytes = 0;
  uint64_t deadline_ms = 0;
  OwnerId owner = kNoOwner;
  bool committing = false;
};

}  // namespace dram_internal

struct DramTier::Impl {
  using Entry = dram_internal::Entry;
  using Shard = dram_internal::Shard;
  using ReservationState = dram_internal::ReservationState;
  using BlockIndex = std::unordered_map<BlockKey, Entry, BlockKeyHash>;

  DramTierOptions options;
  const ByteAccess& bytes;  // options.byte_access or HostByteAccess()
  std::unique_ptr<Arena> arena;
  BlockAllocator allocator;
  std::vector<Shard> shards;

  // The policy mutex; ranked as its tier's (lock_order::kHbmTier or kDramTier), so that a debug
  // build catches an HBM lock taken under a DRAM one (docs/ARCHITECTURE.md §6).
  Mutex write_mu;
  const std::string policy_name;  // the policy's, kept so that naming it needs no lock
  std::unique_ptr<EvictionPolicy> policy GUARDED_BY(write_mu);
  std::unordered_map<uint64_t, ReservationState> reservations GUARDED_BY(write_mu);
  // (deadline_ms, id) of open, idle reservations.
  std::set<std::pair<uint64_t, uint64_t>> deadlines GUARDED_BY(write_mu);
  // Key -> parent link of each open reservation.
  std::unordered_map<BlockKey, std::optional<BlockKey>, BlockKeyHash> in_flight GUARDED_BY(write_mu);
  // Parent key -> how many committed or reserved blocks name it as their parent.
  std::unordered_map<BlockKey, uint64_t, BlockKeyHash> named_parents GUARDED_BY(write_mu);
  struct Quarantined {
    uint64_t offset, alloc_bytes, release_at_ms;
    bool held = false;  // counted in regions_held: region_in_use answered true at its last check
  };
  // Regions of expired reservations, and of aborted or expired ones a writer may still write into
  // (options.region_in_use), in the order they were dropped.
  std::deque<Quarantined> quarantine GUARDED_BY(write_mu);
  // What each owner that ever reserved here holds, and its counters (tiers/owner_quotas.h). One
  // entry per tenant, never erased: the counters are monotonic.
  std::unordered_map<OwnerId, OwnerUsage> owners GUARDED_BY(write_mu);
  uint64_t next_reservation_id GUARDED_BY(write_mu) = 1;
  uint64_t next_generation GUARDED_BY(write_mu) = 1;

  std::atomic<uint64_t> used_bytes{0};
  std::atomic<uint64_t> reserved_bytes{0};
  std::atomic<uint64_t> blocks{0};
  std::atomic<uint64_t> reservation_count{0};
  std::atomic<uint64_t> pinned_blocks{0};

  std::atomic<uint64_t> evicted_capacity{0};
  std::atomic<uint64_t> evicted_fragmentation{0};
  std::atomic<uint64_t> evicted_bytes{0};
  std::atomic<uint64_t> reservations_expired{0};
  std::atomic<uint64_t> checksum_mismatches{0};
  std::atomic<uint64_t> regions_held{0};  // quarantine entries with `held` set

  Impl(const DramTierOptions& opts, std::unique_ptr<Arena> a, std::unique_ptr<EvictionPolicy> p)
      : options(opts),
        bytes(opts.byte_access != nullptr ? *opts.byte_access : HostByteAccess()),
        arena(std::move(a)),
        allocator(opts.capacity_bytes),
        shards(opts.index_shards),
        write_mu(opts.tier_kind == TierKind::kHbm ? lock_order::kHbmTier : lock_order::kDramTier),
        policy_name(p->name()),
        policy(std::move(p)) {}

  uint64_t Now() const { return options.clock->NowMs(); }
  Shard& ShardFor(const BlockKey& key) { return shards[BlockKeyHash{}(key) % shards.size()]; }
  const Shard& ShardFor(const BlockKey& key) const {
    return shards[BlockKeyHash{}(key) % shards.size()];
  }

  BlockMeta MetaOf(const BlockKey& key, const Entry& e) const;

  // Index and access buffers (dram_tier_index.cc).
  // Records an access. Called with the shard lock held (either mode).
  void RecordAccess(Shard& shard, const BlockKey& key, Entry& e, uint64_t now) REQUIRES_SHARED(shard.mu);
  // Feeds buffered accesses to the policy.
  void DrainAccessesLocked() REQUIRES(write_mu);
  bool IsCommitted(const BlockKey& key) const;

  // Parent links (dram_tier_reservations.cc).
  // Counts `parent` as named by one more (delta +1) or one fewer (-1) committed or reserved block.
  void CountParentLocked(const std::optional<BlockKey>& parent, int delta) REQUIRES(write_mu);
  // The parent link of a committed or reserved block, for a walk. write_mu keeps every link in place.
  ParentLink LinkOfLocked(const BlockKey& key) const REQUIRES(write_mu);
  // INVALID_ARGUMENT when giving `key` (neither committed nor reserved) the parent `parent` would
  // make it its own ancestor. A walk that reaches kMaxParentWalk links is accepted (see the top of
  // this file).
  Status CheckParentLocked(const BlockKey& key, const std::optional<BlockKey>& parent) const REQUIRES(write_mu);

  // Eviction (dram_tier_eviction.cc).
  static bool EvictableNow(const Entry& e, uint64_t now) {
    return !e.pinned && e.lease_until_ms.load(std::memory_order_acquire) <= now;
  }
  // Which blocks an eviction may take: `only_owner` set = that owner's blocks alone (to meet its
  // quota); otherwise any block but those of another owner's protected share (for `requester`,
  // the owner of the Reserve that needs the room).
  struct VictimScope {
    std::optional<OwnerId> only_owner;
    OwnerId requester = kNoOwner;
  };
  // Evicts one block chosen by the policy within `scope`. Returns the bytes freed, 0 when nothing
  // is evictable.
  uint64_t EvictOneLocked(const VictimScope& scope) REQUIRES(write_mu);
  bool InScopeLocked(const VictimScope& scope, OwnerId owner) const REQUIRES(write_mu);

  // Owners (dram_tier_reservations.cc).
  uint64_t QuotaOf(OwnerId owner) const {
    return options.quotas == nullptr ? 0 : options.quotas->QuotaOf(owner);
  }
  OwnerUsage& OwnerLocked(OwnerId owner) REQUIRES(write_mu);
  // Whether `owner`'s blocks are out of reach of other owners' evictions: it has a quota and holds
  // no more than it.
  bool ProtectedLocked(OwnerId owner) const REQUIRES(write_mu);
  // Evicts `owner`'s own blocks until `alloc_bytes` more fit in its quota. RESOURCE_EXHAUSTED
  // (counted) when they cannot; OK at once for owners without a quota.
  Status MakeRoomInQuotaLocked(OwnerId owner, uint64_t alloc_bytes) REQUIRES(write_mu);
  void EraseBlockLocked(Shard& shard, BlockIndex::iterator it) REQUIRES(write_mu, shard.mu);

  // Reservations and the quarantine (dram_tier_reservations.cc).
  bool RegionInUseLocked(uint64_t offset, uint64_t bytes) const REQUIRES(write_mu);
  // Forgets a reservation. Its region returns to the allocator at once when the writer gave it
  // back (Abort); after an expiry it is held for expired_quarantine_ms first, because a writer
  // that outlived its reservation (a stalled or partitioned client) may still be writing into it
  // with one-sided puts. Either way, a region a receive may still write into (region_in_use) is
  // held until it no longer may: giving it back would let a late byte land in another block.
  void DropReservationLocked(std::unordered_map<uint64_t, ReservationState>::iterator it, bool expired = false)
      REQUIRES(write_mu);
  // Returns quarantined regions whose time is up and that nothing may still write into. Scans the
  // whole quarantine: a held region may sit before regions whose time came later.
  void ReleaseQuarantineLocked(uint64_t now) REQUIRES(write_mu);
  size_t ReclaimExpiredLocked() REQUIRES(write_mu);
};

}  // namespace kvstash::tiers
