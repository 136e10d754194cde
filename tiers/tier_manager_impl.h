// TierManager's internals, shared by its implementation files (contract in tiers/tier_manager.h):
//   tier_manager.cc            Create, the Tier operations across the tiers, usage and counters
//   tier_manager_promotion.cc  copies between tiers: promotion into DRAM (from HBM, the demotion
//                              queue or the SSD), placement of new blocks in HBM, HBM victims
//                              written into DRAM, reads straight from the demotion queue
//
// DRAM victims on their way to the SSD wait in a DemotionQueue (tiers/demotion_queue.h), which
// owns the staging arena and the worker.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/mutex.h"
#include "tiers/demotion_queue.h"
#include "tiers/tier_manager.h"

namespace kvstash::tiers {

struct TierManager::Impl {
  TierManagerOptions options;
  // Declared before the tiers, destroyed after them: its staging arena is registered with the SSD,
  // and DRAM's eviction hook writes into it. Null without an SSD.
  std::unique_ptr<DemotionQueue> demotion;
  std::unique_ptr<DramTier> dram;
  std::unique_ptr<SsdTier> ssd;
  std::unique_ptr<Tier> hbm;               // declared after dram: destroyed first (its hook writes into DRAM)
  Mutex hbm_mu;                            // the demotion worker's use of hbm against ~TierManager's reset
  const ByteAccess* hbm_bytes = nullptr;
  std::span<std::byte> hbm_arena{};
  std::string hbm_policy;

  Mutex promo_mu;
  std::condition_variable promo_cv;
  std::unordered_set<BlockKey, BlockKeyHash> promoting GUARDED_BY(promo_mu);

  std::atomic<uint64_t> promotions{0}, promotions_failed{0}, ssd_direct_reads{0};
  std::atomic<uint64_t> hbm_placed{0}, hbm_place_fallbacks{0}, hbm_demoted{0}, hbm_demotions_in_dram{0};
  std::atomic<uint64_t> hbm_demotions_to_ssd{0}, hbm_demotions_dropped{0}, hbm_promotions{0};
  std::atomic<uint64_t> hbm_promotions_failed{0}, hbm_reads{0}, hbm_direct_finds{0};

  const Clock& clock() const { return *options.dram.clock; }

  // Creation times: BlockMeta::created_ms is in the DRAM tier's clock (steady, restarts at boot);
  // the SSD keeps wall-clock milliseconds (SsdBlockInfo::created_unix_ms) so a block's age
  // survives a restart. ToUnixMs / FromUnixMs convert by the block's age (tier_manager.cc).
  // A DRAM-clock time as wall-clock milliseconds, by its age now.
  uint64_t ToUnixMs(uint64_t clock_ms) const;
  // The reverse; an unknown time (0, records written before times were kept) reads as now.
  uint64_t FromUnixMs(uint64_t unix_ms) const;
  BlockMeta MetaFromSsd(const SsdBlockInfo& info) const;

  // Copies between tiers (tier_manager_promotion.cc).
  // Copies a victim still waiting in the demotion queue straight into `out` (when DRAM cannot
  // take a promotion). A victim being written is waited for and then read from the SSD.
  // NOT_FOUND when neither holds it.
  Result<BlockMeta> ReadFromDemotionQueue(const BlockKey& key, std::span<std::byte> out);
  // The demotion worker's question: which of these keys HBM still holds (a DRAM victim that is a
  // read copy of an HBM block is not written to the SSD: HBM's copy stays authoritative).
  std::vector<bool> HeldInHbm(const std::vector<BlockKey>& keys);
  // HBM eviction callback: under the HBM tier's locks. Writes the victim into DRAM (which may evict
  // DRAM blocks to the SSD queue in turn); never calls into the HBM tier.
  void OnHbmEvict(const BlockMeta& meta, std::span<const std::byte> bytes);
  // Reserves DRAM for a copy of a block another tier holds (a promotion, an HBM victim). Each tier
  // checks parent links against its own blocks only, so the copy's link can close a cycle with
  // what DRAM holds (A -> B went to SSD, then B -> A was put into DRAM): DRAM refuses that link
  // (INVALID_ARGUMENT), and the copy is then made without it, as a root — the bytes matter more
  // than the order of one pair. A size DRAM refuses is refused again, changing nothing.
  // The copy is charged to `owner`: the HBM block's for HBM's blocks; kNoOwner for blocks from the
  // SSD tier, which keeps no owners (docs/SECURITY.md "Quotas").
  Result<Reservation> ReserveCopyInDram(const BlockKey& key, uint64_t size, const std::optional<BlockKey>& parent,
                                        OwnerId owner);
  // Copies an open DRAM reservation's bytes into HBM and commits them there.
  Result<BlockMeta> PlaceInHbm(const Reservation& r, uint64_t checksum, bool pin);
  // Stages an SSD-only block into DRAM. OK when the block is in DRAM afterwards (by this call or
  // another); NOT_FOUND when it is on neither tier; other errors when it could not be staged.
  Status Promote(const BlockKey& key);
  Status PromoteOnce(const BlockKey& key);
  // Copies a victim still waiting in the demotion queue back into DRAM from its staging copy, so
  // a block is never a miss just because the SSD writer is behind. A victim the worker is writing
  // now is waited for (it is on SSD afterwards). NOT_FOUND when the queue does not hold the key.
  // Lock order: the queue's mutex is never held across a DRAM call (DRAM's eviction hook takes it
  // under DRAM's locks).
  Status PromoteFromDemotionQueue(const BlockKey& key);
  // Copies an HBM block into a DRAM block. NOT_FOUND when HBM does not hold it.
  Status PromoteFromHbm(const BlockKey& key);
  // Stages one block into DRAM: reserves it, has `fill` write the reservation and return the
  // block's checksum, and commits it (the commit verifies the bytes against that checksum). OK
  // when DRAM holds the block afterwards, also when it already did. A failed reservation, fill or
  // commit is counted in `failed` — except a fill that answers ABORTED: its source moved while it
  // was being copied, which is a race, not a failure.
  template <typename Fill>
  Status StageIntoDram(const BlockKey& key, uint64_t size, const std::optional<BlockKey>& parent, OwnerId owner,
                       std::atomic<uint64_t>& done, std::atomic<uint64_t>& failed, Fill&& fill);
};

}  // namespace kvstash::tiers
