// TierManager: the Tier the daemon programs against when a host has DRAM and SSD (DESIGN.md §3,
// §4). It owns a DramTier and, optionally, an SsdTier, and keeps the data path unchanged: every
// address it hands out (BlockMeta::data, Reservation::data) points into the DRAM arena.
//
// Placement: new blocks go to DRAM (Reserve/Commit are the DramTier's). A key already on SSD is
// ALREADY_EXISTS for Reserve (dedup across tiers).
//
// Demotion: the DramTier calls back with each eviction victim (DramTierOptions::on_evict). A
// victim already on SSD is done; otherwise its bytes are copied into a staging area of
// demotion_queue_bytes and queued for a worker thread that writes queued victims to SSD in
// batches. When the staging area is full the victim is dropped and counted
// (demotions_dropped_full) — a put never waits for the SSD. A block is a miss while it waits in
// the queue; Remove() cancels a queued or in-flight demotion.
//
// Promotion: Find, Read and SetPinned(true) of a block that is only on SSD stage it into DRAM
// first (a DRAM reservation filled straight from the SSD, checksum verified, then committed), so
// the caller sees a DRAM block exactly as if it had been put there. Concurrent promotions of one
// key share one read. The SSD keeps its copy (the tiers are inclusive): evicting the block again
// costs no SSD write. When DRAM cannot take it (everything leased or pinned) Read copies from SSD
// directly into the caller's buffer and Find reports a miss.
//
// Leases and pins live in DRAM only: a leased or pinned block is never evicted from DRAM, and a
// block is leased by Find only once it is there. ReleaseLease of a block that is only on SSD is
// OK (its lease had ended when it left DRAM). Remove answers FAILED_PRECONDITION, changing no
// tier, while the DRAM copy is leased; otherwise it removes the block from every tier.
//
// Accounting: Usage() sums the tiers (capacity and used bytes of both; `blocks` counts copies, so
// a block in both tiers counts twice); UsageByTier() gives each tier on its own. Counters() are
// the DRAM tier's; ManagerCounters() adds demotion, promotion and SSD figures.
//
// Thread-safety: every method may be called concurrently from any thread. Lock order: DramTier
// locks -> the demotion queue mutex -> SsdTier locks. The manager never calls into the DramTier
// while holding its own mutexes.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "tiers/dram_tier.h"
#include "tiers/ssd_tier.h"
#include "tiers/tier.h"

namespace kvstash::tiers {

struct TierManagerOptions {
  DramTierOptions dram;                     // on_evict must be empty: the manager installs its own
  std::optional<SsdTierOptions> ssd;        // DRAM only when empty; io_memory is filled in
  uint64_t demotion_queue_bytes = 256ULL << 20;  // staging for victims waiting for the SSD
  size_t demotion_batch_blocks = 64;        // victims per SSD write call
  uint64_t promotion_timeout_ms = 10'000;   // DRAM reservation timeout while staging
};

struct TierManagerCounters {
  uint64_t demotions_queued = 0;
  uint64_t demoted = 0;                  // written to SSD
  uint64_t demotions_already_on_ssd = 0; // nothing to write
  uint64_t demotions_dropped_full = 0;   // staging area full: victim dropped
  uint64_t demotions_failed = 0;         // the SSD refused the write
  uint64_t demotions_cancelled = 0;      // removed while queued
  uint64_t promotions = 0;               // SSD -> DRAM
  uint64_t promotions_failed = 0;        // DRAM had no room, or the SSD read failed
  uint64_t ssd_direct_reads = 0;         // Read served from SSD without promotion
  SsdCounters ssd;
};

struct TierUsageEntry {
  TierKind kind = TierKind::kDram;
  TierUsage usage;
};

class TierManager final : public Tier {
 public:
  // Errors from DramTier::Create and SsdTier::Open; INVALID_ARGUMENT when options.dram.on_evict
  // is set or demotion_queue_bytes is too small for one block of ssd max_block_bytes.
  static Result<std::unique_ptr<TierManager>> Create(const TierManagerOptions& options);
  // Writes every queued victim, then stops the demotion worker.
  ~TierManager() override;

  TierKind kind() const override { return TierKind::kDram; }
  Result<Reservation> Reserve(const BlockKey& key, uint64_t size, const std::optional<BlockKey>& parent,
                              uint64_t timeout_ms) override;
  Result<BlockMeta> Commit(uint64_t reservation_id, uint64_t checksum, bool pin) override;
  Status Abort(uint64_t reservation_id) override;
  Result<Reservation> GetReservation(uint64_t reservation_id) const override;
  std::optional<BlockMeta> Find(const BlockKey& key, uint64_t lease_ms) override;
  Status ReleaseLease(const BlockKey& key, uint64_t lease_epoch) override;
  std::optional<BlockMeta> Peek(const BlockKey& key) const override;
  Result<BlockMeta> Read(const BlockKey& key, std::span<std::byte> out) override;
  Status Remove(const BlockKey& key) override;
  Status SetPinned(const BlockKey& key, bool pinned) override;
  ListPage List(const std::optional<BlockKey>& after, size_t limit) const override;
  size_t ReclaimExpired() override;
  TierUsage Usage() const override;
  TierCounters Counters() const override;

  std::vector<TierUsageEntry> UsageByTier() const;
  TierManagerCounters ManagerCounters() const;
  // Returns once every victim queued before the call has been written to SSD or dropped.
  void DrainDemotions();

  DramTier& dram() const;
  SsdTier* ssd() const;  // nullptr without an SSD tier

 private:
  struct Impl;
  explicit TierManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::tiers
