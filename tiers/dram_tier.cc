// DramTier implementation. The contract and the lock order are in dram_tier.h; in short:
//
//   write_mu_ (the "policy mutex": policy, reservations, in-flight keys)
//     -> shard.mu (exclusive for writers, shared for readers)
//        -> shard.access_mu (leaf; readers append, writers drain)
//     -> BlockAllocator's own mutex (innermost)
//
// Readers never take write_mu_. Lease, last-access and hit fields are atomics so Find/Read update
// them under the shard lock held shared; an evictor re-checks evictability under the shard lock
// held exclusively, when no reader can be extending a lease.
//
// Commit hashes the reservation's bytes outside write_mu_: the reservation is marked
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
#include "tiers/dram_tier.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <limits>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/checksum.h"
#include "common/mutex.h"
#include "tiers/arena.h"
#include "tiers/block_allocator.h"
#include "tiers/eviction_policy.h"
#include "tiers/parent_walk.h"

namespace kvstash::tiers {
namespace {

constexpr uint64_t kDefaultReservationTimeoutMs = 30'000;
// Accesses buffered per shard between drains; beyond this, accesses are dropped (the policy then
// sees a sample of recency, which is all LRU-like policies need).
constexpr size_t kAccessBufferCapacity = 4096;

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

void AtomicMax(std::atomic<uint64_t>& target, uint64_t value) {
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
  bool committing = false;
};

}  // namespace

struct DramTier::Impl {
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

  BlockMeta MetaOf(const BlockKey& key, const Entry& e) const {
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
    m.data = arena->base() + e.offset;
    return m;
  }

  // Records an access. Called with the shard lock held (either mode).
  void RecordAccess(Shard& shard, const BlockKey& key, Entry& e, uint64_t now) REQUIRES_SHARED(shard.mu) {
    e.hits.fetch_add(1, std::memory_order_relaxed);
    AtomicMax(e.last_access_ms, now);
    MutexLock lock(shard.access_mu);
    if (shard.accesses.size() < kAccessBufferCapacity) {
      shard.accesses.push_back(key);
      shard.has_accesses.store(true, std::memory_order_release);
    }
  }

  // Feeds buffered accesses to the policy.
  void DrainAccessesLocked() REQUIRES(write_mu) {
    std::vector<BlockKey> batch;
    for (Shard& shard : shards) {
      if (!shard.has_accesses.load(std::memory_order_acquire)) continue;
      {
        MutexLock lock(shard.access_mu);
        batch.swap(shard.accesses);
        shard.has_accesses.store(false, std::memory_order_release);
      }
      for (const BlockKey& key : batch) policy->OnAccess(key);
      batch.clear();
      {
        // Hand the (now empty) buffer's capacity back when the shard has not refilled it.
        MutexLock lock(shard.access_mu);
        if (shard.accesses.empty()) batch.swap(shard.accesses);
      }
      batch.clear();
    }
  }

  // Counts `parent` as named by one more (delta +1) or one fewer (-1) committed or reserved block.
  void CountParentLocked(const std::optional<BlockKey>& parent, int delta) REQUIRES(write_mu) {
    if (!parent) return;
    if (delta > 0) {
      ++named_parents[*parent];
    } else if (auto it = named_parents.find(*parent); it != named_parents.end() && --it->second == 0) {
      named_parents.erase(it);
    }
  }

  // The parent link of a committed or reserved block, for a walk. write_mu keeps every link in place.
  ParentLink LinkOfLocked(const BlockKey& key) const REQUIRES(write_mu) {
    if (auto r = in_flight.find(key); r != in_flight.end()) return {true, r->second};
    const Shard& shard = ShardFor(key);
    ReaderLock lock(shard.mu);
    auto it = shard.blocks.find(key);
    return it == shard.blocks.end() ? ParentLink{} : ParentLink{true, it->second.parent};
  }

  // INVALID_ARGUMENT when giving `key` (neither committed nor reserved) the parent `parent` would
  // make it its own ancestor. A walk that reaches kMaxParentWalk links is accepted (see the top of
  // this file).
  Status CheckParentLocked(const BlockKey& key, const std::optional<BlockKey>& parent) const REQUIRES(write_mu) {
    if (!parent || *parent == key || !named_parents.contains(key)) return Status::Ok();
    const Ancestry ancestry = WouldBeOwnAncestor(key, parent, [&](const BlockKey& k) {
      write_mu.AssertHeld();  // called synchronously by the walk, under this function's write_mu
      return LinkOfLocked(k);
    });
    if (ancestry != Ancestry::kYes) return Status::Ok();
    return InvalidArgument("parent " + parent->ToHex() + " would make block " + key.ToHex() +
                           " its own ancestor: that parent descends from it (a parent cycle)");
  }

  static bool EvictableNow(const Entry& e, uint64_t now) {
    return !e.pinned && e.lease_until_ms.load(std::memory_order_acquire) <= now;
  }

  // Evicts one block chosen by the policy. Returns the bytes freed, 0 when nothing is evictable.
  uint64_t EvictOneLocked() REQUIRES(write_mu) {
    const uint64_t now = Now();
    for (;;) {
      std::optional<BlockKey> victim = policy->PickVictim([&](const BlockKey& key) {
        const Shard& shard = ShardFor(key);
        ReaderLock lock(shard.mu);
        auto it = shard.blocks.find(key);
        return it != shard.blocks.end() && EvictableNow(it->second, now);
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

  void EraseBlockLocked(Shard& shard, std::unordered_map<BlockKey, Entry, BlockKeyHash>::iterator it)
      REQUIRES(write_mu, shard.mu) {
    const BlockKey key = it->first;
    CountParentLocked(it->second.parent, -1);
    allocator.Free(it->second.offset, it->second.alloc_bytes);
    used_bytes.fetch_sub(it->second.alloc_bytes, std::memory_order_relaxed);
    if (it->second.pinned) pinned_blocks.fetch_sub(1, std::memory_order_relaxed);
    blocks.fetch_sub(1, std::memory_order_relaxed);
    shard.blocks.erase(it);
    policy->OnErase(key);
  }

  bool RegionInUseLocked(uint64_t offset, uint64_t bytes) const REQUIRES(write_mu) {
    return options.region_in_use && options.region_in_use(offset, bytes);
  }

  // Forgets a reservation. Its region returns to the allocator at once when the writer gave it
  // back (Abort); after an expiry it is held for expired_quarantine_ms first, because a writer
  // that outlived its reservation (a stalled or partitioned client) may still be writing into it
  // with one-sided puts. Either way, a region a receive may still write into (region_in_use) is
  // held until it no longer may: giving it back would let a late byte land in another block.
  void DropReservationLocked(std::unordered_map<uint64_t, ReservationState>::iterator it, bool expired = false)
      REQUIRES(write_mu) {
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
    CountParentLocked(r.parent, -1);
    in_flight.erase(r.key);
    if (!r.committing) deadlines.erase({r.deadline_ms, it->first});
    reservations.erase(it);
  }

  // Returns quarantined regions whose time is up and that nothing may still write into. Scans the
  // whole quarantine: a held region may sit before regions whose time came later.
  void ReleaseQuarantineLocked(uint64_t now) REQUIRES(write_mu) {
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

  size_t ReclaimExpiredLocked() REQUIRES(write_mu) {
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

  bool IsCommitted(const BlockKey& key) const {
    const Shard& shard = ShardFor(key);
    ReaderLock lock(shard.mu);
    return shard.blocks.contains(key);
  }
};

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
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<EvictionPolicy> policy,
                           MakeEvictionPolicy(o.eviction_policy));
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

Result<Reservation> DramTier::Reserve(const BlockKey& key, uint64_t size,
                                      const std::optional<BlockKey>& parent, uint64_t timeout_ms) {
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
  const double capacity = static_cast<double>(d.options.capacity_bytes);
  const auto used_after = [&] {
    return static_cast<double>(d.used_bytes.load(std::memory_order_relaxed) + alloc_bytes);
  };
  if (used_after() > d.options.high_watermark * capacity) {
    while (used_after() > d.options.low_watermark * capacity) {
      if (d.EvictOneLocked() == 0) break;
      d.evicted_capacity.fetch_add(1, std::memory_order_relaxed);
    }
  }

  std::optional<uint64_t> offset = d.allocator.Allocate(alloc_bytes);
  while (!offset) {
    if (d.EvictOneLocked() == 0) {
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
  r.deadline_ms =
      SaturatingAdd(d.Now(), timeout_ms == 0 ? kDefaultReservationTimeoutMs : timeout_ms);
  d.reservations.emplace(id, r);
  d.deadlines.emplace(r.deadline_ms, id);
  d.in_flight.emplace(key, r.parent);
  d.CountParentLocked(r.parent, +1);  // the committed block keeps naming it; erasing it forgets
  d.used_bytes.fetch_add(alloc_bytes, std::memory_order_relaxed);
  d.reserved_bytes.fetch_add(alloc_bytes, std::memory_order_relaxed);
  d.reservation_count.fetch_add(1, std::memory_order_relaxed);

  Reservation out;
  out.id = id;
  out.data = d.arena->base() + r.offset;
  out.size = size;
  out.deadline_ms = r.deadline_ms;
  out.key = r.key;
  out.parent = r.parent;
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
    e.pinned = pin;
    e.last_access_ms.store(now, std::memory_order_relaxed);
    meta = d.MetaOf(key, e);
  }
  d.policy->OnInsert(key, r.parent, r.size);
  if (pin) d.pinned_blocks.fetch_add(1, std::memory_order_relaxed);
  d.blocks.fetch_add(1, std::memory_order_relaxed);
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
  return out;
}

std::optional<BlockMeta> DramTier::Find(const BlockKey& key, uint64_t lease_ms) {
  Impl& d = *impl_;
  Shard& shard = d.ShardFor(key);
  ReaderLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return std::nullopt;
  const uint64_t now = d.Now();
  Entry& e = it->second;
  uint64_t epoch = 0;
  if (lease_ms > 0) {
    MutexLock lease_lock(e.lease_mu);
    if (e.lease_until_ms.load(std::memory_order_acquire) <= now) {
      // The previous lease (if any) ran out: its holders' late releases must not end this one.
      e.lease_holders = 0;
      ++e.lease_epoch;
    }
    ++e.lease_holders;
    AtomicMax(e.lease_until_ms, SaturatingAdd(now, lease_ms));
    epoch = e.lease_epoch;
  }
  d.RecordAccess(shard, key, e, now);
  BlockMeta meta = d.MetaOf(key, e);
  meta.lease_epoch = epoch;
  return meta;
}

Status DramTier::ReleaseLease(const BlockKey& key, uint64_t lease_epoch) {
  Impl& d = *impl_;
  Shard& shard = d.ShardFor(key);
  ReaderLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return NotFound("block " + key.ToHex() + " is not stored");
  Entry& e = it->second;
  MutexLock lease_lock(e.lease_mu);
  if (lease_epoch == 0 || lease_epoch != e.lease_epoch || e.lease_holders == 0) return Status::Ok();  // stale
  if (--e.lease_holders == 0) e.lease_until_ms.store(0, std::memory_order_release);
  return Status::Ok();
}

std::optional<BlockMeta> DramTier::Peek(const BlockKey& key) const {
  const Impl& d = *impl_;
  const Shard& shard = d.ShardFor(key);
  ReaderLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return std::nullopt;
  return d.MetaOf(key, it->second);
}

Result<BlockMeta> DramTier::Read(const BlockKey& key, std::span<std::byte> out) {
  Impl& d = *impl_;
  Shard& shard = d.ShardFor(key);
  ReaderLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return NotFound("block " + key.ToHex() + " is not stored");
  Entry& e = it->second;
  if (out.size() < e.size) {
    return OutOfRange("buffer of " + std::to_string(out.size()) + " bytes is smaller than block " +
                      key.ToHex() + " (" + std::to_string(e.size) + " bytes)");
  }
  KVSTASH_RETURN_IF_ERROR(d.bytes.CopyOut(out.data(), d.arena->base() + e.offset, e.size));
  d.RecordAccess(shard, key, e, d.Now());
  return d.MetaOf(key, e);
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

Status DramTier::SetPinned(const BlockKey& key, bool pinned) {
  Impl& d = *impl_;
  Shard& shard = d.ShardFor(key);
  WriterLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return NotFound("block " + key.ToHex() + " is not stored");
  if (it->second.pinned != pinned) {
    it->second.pinned = pinned;
    if (pinned) {
      d.pinned_blocks.fetch_add(1, std::memory_order_relaxed);
    } else {
      d.pinned_blocks.fetch_sub(1, std::memory_order_relaxed);
    }
  }
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

// Cost: every shard is scanned under its shared lock (O(n) key comparisons per call) and at most
// `limit` keys per shard are kept (O(limit) extra memory per shard via nth_element), then the
// shards' survivors are merged and the page's metadata is read. Admin use only.
std::vector<BlockMeta> DramTier::Hottest(size_t n) const {
  const Impl& d = *impl_;
  auto hotter = [](const BlockMeta& a, const BlockMeta& b) { return a.hits > b.hits; };
  std::vector<BlockMeta> top;  // a min-heap on hits of at most n entries
  if (n == 0) return top;
  for (const Shard& shard : d.shards) {
    ReaderLock lock(shard.mu);
    for (const auto& [key, entry] : shard.blocks) {
      const uint64_t hits = entry.hits.load(std::memory_order_relaxed);
      if (top.size() == n && hits <= top.front().hits) continue;
      top.push_back(d.MetaOf(key, entry));
      std::push_heap(top.begin(), top.end(), hotter);
      if (top.size() > n) {
        std::pop_heap(top.begin(), top.end(), hotter);
        top.pop_back();
      }
    }
  }
  std::sort(top.begin(), top.end(), hotter);
  return top;
}

ListPage DramTier::List(const std::optional<BlockKey>& after, size_t limit) const {
  const Impl& d = *impl_;
  std::vector<BlockKey> chosen;
  std::vector<BlockKey> shard_keys;
  bool more = false;  // keys beyond the page exist
  for (const Shard& shard : d.shards) {
    shard_keys.clear();
    {
      ReaderLock lock(shard.mu);
      for (const auto& [key, entry] : shard.blocks) {
        if (!after || key > *after) shard_keys.push_back(key);
      }
    }
    if (shard_keys.size() > limit) {
      more = true;
      std::nth_element(shard_keys.begin(), shard_keys.begin() + static_cast<std::ptrdiff_t>(limit),
                       shard_keys.end());
      shard_keys.resize(limit);
    }
    chosen.insert(chosen.end(), shard_keys.begin(), shard_keys.end());
    if (chosen.size() > limit) {
      more = true;
      std::nth_element(chosen.begin(), chosen.begin() + static_cast<std::ptrdiff_t>(limit),
                       chosen.end());
      chosen.resize(limit);
    }
  }
  std::sort(chosen.begin(), chosen.end());

  ListPage page;
  if (limit == 0) {
    if (more) page.next_after = after;
    return page;
  }
  page.blocks.reserve(chosen.size());
  for (const BlockKey& key : chosen) {
    // A block removed since the scan is skipped; the cursor still moves past it.
    if (auto meta = Peek(key)) page.blocks.push_back(std::move(*meta));
  }
  if (more && !chosen.empty()) page.next_after = chosen.back();
  return page;
}

size_t DramTier::ReclaimExpired() {
  MutexLock write(impl_->write_mu);
  return impl_->ReclaimExpiredLocked();
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

TierKind DramTier::kind() const { return impl_->options.tier_kind; }
std::byte* DramTier::arena_base() const { return impl_->arena->base(); }
uint64_t DramTier::arena_bytes() const { return impl_->arena->size(); }
bool DramTier::huge_pages_active() const { return impl_->arena->huge_pages_active(); }
std::string_view DramTier::policy_name() const { return impl_->policy_name; }

}  // namespace kvstash::tiers
