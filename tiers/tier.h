// Tier: where a block's bytes live on one daemon (docs/ARCHITECTURE.md §1, §3). This is the contract
// the server programs against; DramTier, HbmTier (gpu/) and TierManager implement it.
//
// Blocks are written in two phases: Reserve() hands out a region the caller fills, Commit()
// verifies size and checksum and makes the block visible atomically; Abort() or a reservation
// timeout returns the region. Committed blocks are immutable until removed or evicted.
//
// Guarantees every implementation gives:
//  * a leased block (lease_until_ms in the future) or a pinned block is never evicted, and a
//    leased block is never removed (Remove answers FAILED_PRECONDITION);
//  * bytes are never reused while a reader copies them (Read copies under the block's shard lock);
//  * every failed call changes nothing.
//
// Thread-safety: every method may be called concurrently from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "kvstash/block_key.h"
#include "kvstash/result.h"
#include "kvstash/reuse_advice.h"
#include "tiers/owner_quotas.h"

namespace kvstash::tiers {

// Marks a lease epoch that Tier::FindForDeviceReader took on a copy in GPU memory (tier epochs
// count up from 1, so no tier hands out an epoch with this bit on its own).
inline constexpr uint64_t kHbmLeaseEpochBit = 1ULL << 63;

enum class TierKind { kHbm, kDram, kSsd };
std::string_view TierName(TierKind kind);  // "hbm", "dram", "ssd"

// What a reader learns about a committed block.
struct BlockMeta {
  BlockKey key;
  TierKind tier = TierKind::kDram;
  uint64_t size = 0;
  uint64_t checksum = 0;             // XXH3-64 of the bytes (common/checksum.h)
  std::optional<BlockKey> parent;    // previous block of the chain, when the writer said
  uint64_t generation = 0;           // unique per commit on this tier; changes when the key is re-put
  bool pinned = false;
  uint64_t lease_until_ms = 0;       // 0 when never leased
  uint64_t lease_epoch = 0;          // set by Find with a lease: pass it back to ReleaseLease
  uint64_t created_ms = 0;
  uint64_t last_access_ms = 0;
  uint64_t hits = 0;
  OwnerId owner = kNoOwner;          // who the block is charged to (tiers/owner_quotas.h)
  const std::byte* data = nullptr;   // address inside the tier's memory; stable only while leased
};

struct Reservation {
  uint64_t id = 0;
  std::byte* data = nullptr;  // the region to fill; exactly `size` bytes
  uint64_t size = 0;
  uint64_t deadline_ms = 0;   // reclaimed after this unless committed or aborted
  BlockKey key;                    // what Reserve was asked for
  std::optional<BlockKey> parent;
  OwnerId owner = kNoOwner;        // who it is charged to
};

struct TierUsage {
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;      // committed + reserved, as allocated (after rounding)
  uint64_t reserved_bytes = 0;  // in reservations not yet committed
  uint64_t blocks = 0;          // committed blocks
  uint64_t reservations = 0;
  uint64_t leased_blocks = 0;   // blocks whose lease is still running
  uint64_t pinned_blocks = 0;
};

// Monotonic event counters; read by the server to publish metrics.
struct TierCounters {
  uint64_t evicted_capacity = 0;        // evicted to get back under the low watermark
  uint64_t evicted_fragmentation = 0;   // evicted because no free range was large enough
  uint64_t evicted_bytes = 0;
  uint64_t reservations_expired = 0;
  uint64_t checksum_mismatches = 0;     // commits refused for a wrong checksum
  // A gauge: regions of aborted or expired reservations held out of use because a receive may
  // still write into them (DramTierOptions::region_in_use).
  uint64_t regions_held_for_late_writes = 0;
};

struct ListPage {
  std::vector<BlockMeta> blocks;        // ordered by key
  std::optional<BlockKey> next_after;   // pass back to continue; empty when done
};

class Tier {
 public:
  virtual ~Tier() = default;

  virtual TierKind kind() const = 0;

  // Reserves `size` bytes for `key`. ALREADY_EXISTS when the key is committed (dedup: send
  // nothing), ABORTED when another reservation for the key is in flight, INVALID_ARGUMENT for a
  // size outside [1, max_block_bytes] or for a `parent` that would make the block its own
  // ancestor among the blocks the tier holds or has reserved (a parent cycle; a parent equal to
  // `key` is dropped instead), RESOURCE_EXHAUSTED when eviction cannot make room or `owner`'s
  // quota cannot be met (tiers/owner_quotas.h). The reservation and the block it becomes are
  // charged to `owner`. Every implementation declares the same default, kNoOwner (the raw key
  // space), so the default does not depend on the static type a caller holds.
  virtual Result<Reservation> Reserve(const BlockKey& key, uint64_t size,
                                      const std::optional<BlockKey>& parent, uint64_t timeout_ms,
                                      OwnerId owner = kNoOwner) = 0;
  // Makes the reservation's block visible. NOT_FOUND for an unknown or expired reservation;
  // DATA_LOSS when the bytes do not hash to `checksum` (the reservation stays open so the writer
  // may rewrite and commit again, or abort).
  virtual Result<BlockMeta> Commit(uint64_t reservation_id, uint64_t checksum, bool pin) = 0;
  // Returns the reservation's region. NOT_FOUND when unknown.
  virtual Status Abort(uint64_t reservation_id) = 0;
  // The open reservation with this id. NOT_FOUND when unknown, committed, aborted or expired.
  // Lets a caller check a whole batch before committing any of it.
  virtual Result<Reservation> GetReservation(uint64_t reservation_id) const = 0;

  // Metadata of a committed block, or nullopt. Counts an access for the eviction policy. With
  // lease_ms > 0 extends the block's lease to at least now + lease_ms.
  virtual std::optional<BlockMeta> Find(const BlockKey& key, uint64_t lease_ms) = 0;
  // As Find, for a reader that can receive straight from device memory (the two-sided path of a
  // UCX built with CUDA): a tier that holds the block in GPU memory may lease and describe that
  // copy in place (BlockMeta::tier kHbm, `data` a device address) instead of staging it. The
  // default is Find.
  // A lease such a tier takes on its GPU copy carries kHbmLeaseEpochBit in its epoch.
  virtual std::optional<BlockMeta> FindForDeviceReader(const BlockKey& key, uint64_t lease_ms) {
    return Find(key, lease_ms);
  }
  // Ends one holder's lease taken by Find (the epoch it returned). The lease ends when its last
  // holder releases it or its time runs out, whichever is first. A release from an earlier lease
  // (one that already ran out) is ignored. NOT_FOUND when the block is absent.
  virtual Status ReleaseLease(const BlockKey& key, uint64_t lease_epoch) = 0;
  // Metadata without counting an access or leasing (admin inspection).
  virtual std::optional<BlockMeta> Peek(const BlockKey& key) const = 0;
  // Copies a committed block into `out` and counts an access. NOT_FOUND when absent,
  // OUT_OF_RANGE when out.size() is smaller than the block. Returns the block's metadata.
  virtual Result<BlockMeta> Read(const BlockKey& key, std::span<std::byte> out) = 0;

  // NOT_FOUND when absent; FAILED_PRECONDITION when leased.
  virtual Status Remove(const BlockKey& key) = 0;
  // NOT_FOUND when absent.
  virtual Status SetPinned(const BlockKey& key, bool pinned) = 0;
  // Passes the engine's reuse advice to the eviction policy of each tier holding the block
  // (kvstash/reuse_advice.h); blocks only on SSD take none (its reclamation is FIFO). NOT_FOUND
  // when absent from the tiers that take advice.
  virtual Status Advise(const BlockKey& key, ReuseAdvice advice) = 0;

  // Committed blocks with key > after (all when nullopt), at most `limit`, ordered by key.
  virtual ListPage List(const std::optional<BlockKey>& after, size_t limit) const = 0;

  // Reclaims reservations whose deadline has passed; returns how many.
  virtual size_t ReclaimExpired() = 0;

  virtual TierUsage Usage() const = 0;
  virtual TierCounters Counters() const = 0;
};

}  // namespace kvstash::tiers
