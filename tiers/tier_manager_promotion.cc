// TierManager's copies between tiers (contract in tiers/tier_manager.h, internals in
// tiers/tier_manager_impl.h): promotion of a block into DRAM from HBM, the demotion queue or the
// SSD (concurrent promotions of one key share one copy), placement of a new block in HBM, HBM
// victims written into DRAM (or handed to the SSD queue), and reads straight from the demotion
// queue. Lock order: the demotion queue's mutex is never held across a DRAM call.
#include "tiers/tier_manager_impl.h"

#include <cstring>
#include <utility>

#include "tiers/block_allocator.h"

namespace kvstash::tiers {

// Defined first: every caller is in this file.
template <typename Fill>
Status TierManager::Impl::StageIntoDram(const BlockKey& key, uint64_t size, const std::optional<BlockKey>& parent,
                                        OwnerId owner, std::atomic<uint64_t>& done, std::atomic<uint64_t>& failed,
                                        Fill&& fill) {
  Result<Reservation> r = ReserveCopyInDram(key, size, parent, owner);
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kAlreadyExists) return Status::Ok();
    failed.fetch_add(1, std::memory_order_relaxed);
    return r.status();
  }
  Result<uint64_t> checksum = fill(*r);
  Status st = checksum.ok() ? dram->Commit(r->id, *checksum, false).status() : checksum.status();
  if (!st.ok()) {
    (void)dram->Abort(r->id);
    if (st.code() != StatusCode::kAborted) failed.fetch_add(1, std::memory_order_relaxed);
    return st;
  }
  done.fetch_add(1, std::memory_order_relaxed);
  return Status::Ok();
}

Result<BlockMeta> TierManager::Impl::ReadFromDemotionQueue(const BlockKey& key, std::span<std::byte> out) {
  Result<BlockMeta> queued = demotion->ReadQueued(key, out);
  if (queued.ok() || queued.status().code() != StatusCode::kNotFound) return queued;
  KVSTASH_ASSIGN_OR_RETURN(SsdBlockInfo info, ssd->Read(key, out));
  ssd_direct_reads.fetch_add(1, std::memory_order_relaxed);
  return MetaFromSsd(info);
}

std::vector<bool> TierManager::Impl::HeldInHbm(const std::vector<BlockKey>& keys) {
  // hbm is used under hbm_mu: ~TierManager takes it away under that lock while this runs.
  MutexLock hbm_lock(hbm_mu);
  Tier* const hbm_now = hbm.get();
  if (hbm_now == nullptr) return {};
  std::vector<bool> held(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) held[i] = hbm_now->Peek(keys[i]).has_value();
  return held;
}

void TierManager::Impl::OnHbmEvict(const BlockMeta& meta, std::span<const std::byte> bytes) {
  Result<Reservation> r = ReserveCopyInDram(meta.key, bytes.size(), meta.parent, meta.owner);
  if (!r.ok()) {
    const StatusCode code = r.status().code();
    if (code == StatusCode::kAlreadyExists || code == StatusCode::kAborted) {
      // Committed in DRAM already (a read copy), or being copied there by a promotion.
      hbm_demotions_in_dram.fetch_add(1, std::memory_order_relaxed);
    } else if (ssd) {
      hbm_demotions_to_ssd.fetch_add(1, std::memory_order_relaxed);
      demotion->Offer(meta, bytes);
    } else {
      hbm_demotions_dropped.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  std::memcpy(r->data, bytes.data(), bytes.size());
  if (Result<BlockMeta> committed = dram->Commit(r->id, meta.checksum, false); !committed.ok()) {
    (void)dram->Abort(r->id);
    hbm_demotions_dropped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  hbm_demoted.fetch_add(1, std::memory_order_relaxed);
}

Result<Reservation> TierManager::Impl::ReserveCopyInDram(const BlockKey& key, uint64_t size,
                                                          const std::optional<BlockKey>& parent, OwnerId owner) {
  Result<Reservation> r = dram->Reserve(key, size, parent, options.promotion_timeout_ms, owner);
  if (r.ok() || r.status().code() != StatusCode::kInvalidArgument || !parent) return r;
  return dram->Reserve(key, size, std::nullopt, options.promotion_timeout_ms, owner);
}

Result<BlockMeta> TierManager::Impl::PlaceInHbm(const Reservation& r, uint64_t checksum, bool pin) {
  KVSTASH_ASSIGN_OR_RETURN(Reservation h,
                           hbm->Reserve(r.key, r.size, r.parent, options.promotion_timeout_ms, r.owner));
  if (Status st = hbm_bytes->CopyIn(h.data, r.data, r.size); !st.ok()) {
    (void)hbm->Abort(h.id);
    return st;
  }
  Result<BlockMeta> committed = hbm->Commit(h.id, checksum, pin);
  if (!committed.ok()) (void)hbm->Abort(h.id);
  return committed;
}

Status TierManager::Impl::Promote(const BlockKey& key) {
  {
    MutexLock lock(promo_mu);
    if (promoting.contains(key)) {
      lock.Wait(promo_cv, [&] { promo_mu.AssertHeld(); return !promoting.contains(key); });
      return Status::Ok();  // the caller looks in DRAM again
    }
    promoting.insert(key);
  }
  Status st = PromoteOnce(key);
  {
    MutexLock lock(promo_mu);
    promoting.erase(key);
  }
  promo_cv.notify_all();
  return st;
}

Status TierManager::Impl::PromoteOnce(const BlockKey& key) {
  if (hbm) {
    Status st = PromoteFromHbm(key);
    if (st.code() != StatusCode::kNotFound) return st;
  }
  if (!ssd) return NotFound("block " + key.ToHex() + " is not stored");
  Status from_queue = PromoteFromDemotionQueue(key);
  if (from_queue.code() != StatusCode::kNotFound) return from_queue;
  std::optional<SsdBlockInfo> info = ssd->Lookup(key);
  if (!info) return NotFound("block " + key.ToHex() + " is not stored");
  return StageIntoDram(key, info->size, info->parent, info->owner, promotions, promotions_failed,
                       [&](const Reservation& r) -> Result<uint64_t> {
    // DRAM ranges are 4 KiB granules: the reservation holds the padded record, so the SSD reads
    // straight into it.
    KVSTASH_ASSIGN_OR_RETURN(SsdBlockInfo read,
                             ssd->Read(key, std::span<std::byte>(r.data, BlockAllocator::RoundUp(r.size))));
    return read.checksum;
  });
}

Status TierManager::Impl::PromoteFromDemotionQueue(const BlockKey& key) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::optional<QueuedVictim> v = demotion->WaitQueued(key);
    if (!v) return NotFound("block " + key.ToHex() + " is not queued for ssd");
    Status st = StageIntoDram(key, v->size, v->parent, v->owner, promotions, promotions_failed,
                              [&](const Reservation& r) -> Result<uint64_t> {
      // Still queued at the same place: the worker has not taken it and Remove has not freed it.
      KVSTASH_RETURN_IF_ERROR(demotion->CopyIfStillQueued(*v, r.data));
      return v->checksum;  // Commit verifies the copy against it
    });
    if (st.code() != StatusCode::kAborted) return st;
    // Taken by the worker (on SSD once written) or removed: look again.
  }
  return NotFound("block " + key.ToHex() + " left the demotion queue");
}

Status TierManager::Impl::PromoteFromHbm(const BlockKey& key) {
  std::optional<BlockMeta> info = hbm->Peek(key);
  if (!info) return NotFound("block " + key.ToHex() + " is not in hbm");
  return StageIntoDram(key, info->size, info->parent, info->owner, hbm_promotions, hbm_promotions_failed,
                       [&](const Reservation& r) -> Result<uint64_t> {
    KVSTASH_ASSIGN_OR_RETURN(BlockMeta read, hbm->Read(key, std::span<std::byte>(r.data, r.size)));
    // Evicted and put again with another size since the Peek.
    if (read.size != r.size) return Aborted("block " + key.ToHex() + " changed while it was copied");
    return read.checksum;
  });
}

}  // namespace kvstash::tiers
