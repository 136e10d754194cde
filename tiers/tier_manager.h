// TierManager: the Tier the daemon programs against when a host has more than DRAM
// (docs/ARCHITECTURE.md §3, §4). It owns a DramTier and, optionally, an HBM tier above it and an
// SsdTier below it, and keeps the data path unchanged: every address it hands out (BlockMeta::data,
// Reservation::data) points into the DRAM arena, the memory the transport serves one-sided.
//
// Placement: Reserve hands out a DRAM region (the one-sided landing area). Without HBM, Commit
// commits it there. With HBM, Commit copies the bytes into an HBM reservation
// (ByteAccess::CopyIn), commits that (the HBM tier verifies the checksum itself) and gives the
// DRAM region back: new blocks live in HBM. When HBM cannot take the block (everything leased,
// pinned or reserved) the block is committed in DRAM instead (counted: hbm_place_fallbacks). A key
// already in HBM or on SSD is ALREADY_EXISTS for Reserve (dedup across tiers).
//
// HBM is served through DRAM ("staged") to every reader but one: FindForDeviceReader, for a reader
// whose bytes the daemon sends two-sided with a UCX that moves device memory (docs/GPU.md
// "GPU-direct"), leases the HBM copy in place and describes it (tier kHbm, a device address); the
// lease keeps it from being evicted while it is sent, as in DRAM. Such a lease's epoch carries
// kHbmLeaseEpochBit, so ReleaseLease ends it in HBM. Otherwise Find of a block that is only in HBM copies it into a DRAM
// block first (hbm_promotions) and leases that copy, so one-sided readers only ever see DRAM
// addresses. The HBM copy stays (inclusive): a re-read is served from DRAM without a copy, and
// when the DRAM copy is evicted the HBM copy still answers. Read (the inline path) copies straight
// out of HBM without promotion (hbm_reads). Why staged even where UCX could read GPU memory: the
// client names one rkey per daemon and the HBM arena is not registered (docs/GPU.md).
//
// Demotion: HBM eviction victims are written into DRAM (hbm_demoted; a victim DRAM already holds is
// done). When DRAM cannot take one it goes to the SSD demotion queue if there is an SSD, else it is
// dropped (hbm_demotions_dropped). DRAM victims are offered to the SSD: each is copied into a
// staging area of demotion_queue_bytes and queued for a worker thread that writes queued victims to
// SSD in batches, skipping those that HBM still holds (tiers/demotion_queue.h). When the staging
// area is full the victim is dropped and counted (demotions_dropped_full) — a put never waits for
// the SSD. A block that waits in the queue is still found: promotion copies it back from its
// staging copy (a block the worker is writing at that moment is waited for, then read from SSD);
// Peek() reports it (tier ssd, no address) and Read() copies it straight from staging when DRAM
// cannot take a promotion (demotion_queue_reads), so an acknowledged block never reads as a miss
// while it waits (issue 17). The one window left: Find (a one-sided read needs a DRAM copy) misses
// while DRAM has no room for the promotion at all, counted in promotions_failed. Remove() cancels a
// queued or in-flight demotion.
//
// Promotion from SSD: Find, Read and SetPinned(true) of a block that is only on SSD stage it into
// DRAM first (a DRAM reservation filled straight from the SSD, checksum verified, then committed),
// so the caller sees a DRAM block exactly as if it had been put there. Concurrent promotions of
// one key (from HBM or SSD) share one copy. The SSD keeps its copy (the tiers are inclusive):
// evicting the block again costs no SSD write. When DRAM cannot take it (everything leased or
// pinned) Read copies from SSD directly into the caller's buffer and Find reports a miss.
//
// Parent links: each tier refuses a link that would make a block its own ancestor among its own
// blocks (Tier::Reserve); a put is refused so when DRAM would hold the cycle. A link that closes a
// cycle only across tiers (A -> B on SSD or in HBM, B -> A put into DRAM) is accepted; when DRAM
// then refuses it for a copy of A (promotion, HBM demotion), the copy is made without the link.
// HBM refusing a new block's link keeps the block in DRAM (counted in hbm_place_fallbacks). No
// tier's eviction ever depends on links across tiers.
//
// Leases live in DRAM (Find leases the DRAM copy), except those of FindForDeviceReader: a leased block is never evicted from DRAM.
// Pins apply to every tier holding the block (SetPinned and Commit(pin) pin the HBM copy too).
// ReleaseLease of a block that is no longer in DRAM is OK (its lease had ended when it left).
// Remove answers FAILED_PRECONDITION, changing no tier, while the DRAM copy is leased; otherwise
// it removes the block from every tier.
//
// Accounting: Usage() sums the tiers (`blocks` counts copies, so a block in two tiers counts
// twice); UsageByTier() gives each tier on its own (hbm, dram, ssd). Counters() are the DRAM
// tier's, HbmCounters() the HBM tier's; ManagerCounters() adds demotion, promotion and SSD figures.
//
// Thread-safety: every method may be called concurrently from any thread. Lock order: HBM tier
// locks -> DramTier locks -> the demotion queue mutex -> SsdTier locks (the HBM eviction hook
// writes into DRAM under the HBM tier's locks; nothing calls into HBM while holding DRAM's). The
// manager never calls into a tier while holding its own mutexes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tiers/dram_tier.h"
#include "tiers/ssd_tier.h"
#include "tiers/tier.h"
#include "tiers/tier_stats.h"

namespace kvstash::tiers {

// The eviction hook a tier calls with each victim's metadata and (host) bytes.
using EvictHook = std::function<void(const BlockMeta&, std::span<const std::byte>)>;

// An HBM tier made by the caller (tiers/ knows no CUDA; gpu/HbmTier is the real one).
struct HbmAttachment {
  std::unique_ptr<Tier> tier;          // reports TierKind::kHbm
  const ByteAccess* bytes = nullptr;   // copies host bytes into the tier's memory; outlives `tier`'s use
  std::span<std::byte> arena{};        // the device memory every HBM block lies in (for UCX registration)
  std::string policy_name;             // reported by Stats
};

struct TierManagerOptions {
  DramTierOptions dram;                     // on_evict must be empty: the manager installs its own
  std::optional<SsdTierOptions> ssd;        // DRAM only when empty; io_memory is filled in
  uint64_t demotion_queue_bytes = 256ULL << 20;  // staging for victims waiting for the SSD
  size_t demotion_batch_blocks = 64;        // victims per SSD write call
  uint64_t promotion_timeout_ms = 10'000;   // DRAM reservation timeout while staging
  // Makes the HBM tier with `on_evict` installed as its eviction hook; empty = no HBM tier.
  std::function<Result<HbmAttachment>(EvictHook on_evict)> hbm;
};

class TierManager final : public Tier, public TierStats {
 public:
  // Errors from DramTier::Create and SsdTier::Open; INVALID_ARGUMENT when options.dram.on_evict
  // is set or demotion_queue_bytes is too small for one block of ssd max_block_bytes.
  static Result<std::unique_ptr<TierManager>> Create(const TierManagerOptions& options);
  // Writes every queued victim, then stops the demotion worker.
  ~TierManager() override;

  TierKind kind() const override { return TierKind::kDram; }
  Result<Reservation> Reserve(const BlockKey& key, uint64_t size, const std::optional<BlockKey>& parent,
                              uint64_t timeout_ms, OwnerId owner = kNoOwner) override;
  Result<BlockMeta> Commit(uint64_t reservation_id, uint64_t checksum, bool pin) override;
  Status Abort(uint64_t reservation_id) override;
  Result<Reservation> GetReservation(uint64_t reservation_id) const override;
  std::optional<BlockMeta> Find(const BlockKey& key, uint64_t lease_ms) override;
  std::optional<BlockMeta> FindForDeviceReader(const BlockKey& key, uint64_t lease_ms) override;
  Status ReleaseLease(const BlockKey& key, uint64_t lease_epoch) override;
  std::optional<BlockMeta> Peek(const BlockKey& key) const override;
  Result<BlockMeta> Read(const BlockKey& key, std::span<std::byte> out) override;
  Status Remove(const BlockKey& key) override;
  Status SetPinned(const BlockKey& key, bool pinned) override;
  Status Advise(const BlockKey& key, ReuseAdvice advice) override;
  ListPage List(const std::optional<BlockKey>& after, size_t limit) const override;
  size_t ReclaimExpired() override;
  TierUsage Usage() const override;
  TierCounters Counters() const override;

  // TierStats (tiers/tier_stats.h).
  std::vector<TierUsageEntry> UsageByTier() const override;
  TierCounters HbmCounters() const override;  // zeros without an HBM tier
  TierManagerCounters ManagerCounters() const override;
  bool has_hbm() const override { return hbm() != nullptr; }
  std::vector<BlockMeta> Hottest(size_t n) const override;  // the DRAM tier's
  std::vector<OwnerUsage> DramOwnerUsage() const override;
  std::vector<OwnerUsage> SsdOwnerUsage() const override;
  // (Usage and Counters above serve Tier and TierStats alike.)

  // Returns once every victim queued before the call has been written to SSD or dropped.
  void DrainDemotions();

  DramTier& dram() const;
  SsdTier* ssd() const;  // nullptr without an SSD tier
  Tier* hbm() const;     // nullptr without an HBM tier
  std::span<std::byte> hbm_arena() const;   // empty without an HBM tier
  const ByteAccess* hbm_bytes() const;      // nullptr without an HBM tier
  const std::string& hbm_policy_name() const override;

 private:
  struct Impl;
  explicit TierManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::tiers
