// TierStats: what a stack of tiers reports about itself beyond the Tier contract (tiers/tier.h):
// each tier's usage, the counters of each tier and of the moves between them, and the hottest
// blocks. The daemon's Stats RPC and its metrics read it (server/store_service.h,
// server/server_metrics.h), so they depend on this interface and on Tier, not on TierManager
// (the implementation the daemon uses); a test hands them a small one of its own instead.
//
// Thread-safety: every method may be called concurrently from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tiers/ssd_tier.h"
#include "tiers/tier.h"

namespace kvstash::tiers {

// Demotion, promotion and SSD figures of a tier stack (cumulative since it was made).
struct TierManagerCounters {
  uint64_t demotions_queued = 0;
  uint64_t demoted = 0;                  // written to SSD
  uint64_t demotions_already_on_ssd = 0; // nothing to write: on SSD, or queued for it already
  uint64_t demotions_dropped_full = 0;   // staging area full: victim dropped
  uint64_t demotions_failed = 0;         // the SSD refused the write
  uint64_t demotions_cancelled = 0;      // removed while queued
  uint64_t promotions = 0;               // SSD -> DRAM
  uint64_t promotions_failed = 0;        // DRAM had no room, or the SSD read failed
  uint64_t ssd_direct_reads = 0;         // Read served from SSD without promotion
  uint64_t demotions_skipped_in_hbm = 0; // DRAM victim not written to SSD: HBM still holds it
  uint64_t hbm_placed = 0;               // commits that landed in HBM
  uint64_t hbm_place_fallbacks = 0;      // commits kept in DRAM: HBM could not take them
  uint64_t hbm_demoted = 0;              // HBM victims written into DRAM
  uint64_t hbm_demotions_in_dram = 0;    // HBM victims DRAM already held (or was receiving)
  uint64_t hbm_demotions_to_ssd = 0;     // HBM victims DRAM could not take, offered to the SSD
  uint64_t hbm_demotions_dropped = 0;    // HBM victims lost: no room in DRAM and no SSD
  uint64_t hbm_promotions = 0;           // HBM -> DRAM copies for one-sided readers
  uint64_t hbm_promotions_failed = 0;    // DRAM had no room, or the HBM copy failed
  uint64_t hbm_reads = 0;                // inline Reads served straight from HBM
  uint64_t hbm_direct_finds = 0;         // HBM copies leased in place for device readers (no staging)
  uint64_t demotion_queue_reads = 0;     // Reads served from a victim's staging copy (DRAM was full)
  SsdCounters ssd;
};

struct TierUsageEntry {
  TierKind kind = TierKind::kDram;
  TierUsage usage;
};

class TierStats {
 public:
  virtual ~TierStats() = default;

  // The sum over every tier (as Tier::Usage; `blocks` counts copies).
  virtual TierUsage Usage() const = 0;
  // Each tier present, top first: hbm, dram, ssd.
  virtual std::vector<TierUsageEntry> UsageByTier() const = 0;
  // The DRAM tier's counters.
  virtual TierCounters Counters() const = 0;
  // The HBM tier's counters; zeros without an HBM tier.
  virtual TierCounters HbmCounters() const = 0;
  // Moves between tiers and the SSD's figures; zeros for what is not present.
  virtual TierManagerCounters ManagerCounters() const = 0;
  virtual bool has_hbm() const = 0;
  // The HBM tier's eviction policy; empty without an HBM tier.
  virtual const std::string& hbm_policy_name() const = 0;
  // The DRAM tier's `n` resident blocks with the most hits, most first.
  virtual std::vector<BlockMeta> Hottest(size_t n) const = 0;
  // What each owner holds in the DRAM tier and its counters (tiers/owner_quotas.h), by owner;
  // empty where owners are not accounted.
  virtual std::vector<OwnerUsage> DramOwnerUsage() const { return {}; }
  // The same for the SSD tier (tiers/ssd_tier.h "Owners and quotas"); empty without one.
  virtual std::vector<OwnerUsage> SsdOwnerUsage() const { return {}; }
};

}  // namespace kvstash::tiers
