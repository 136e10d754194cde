// TierManager implementation (contract in tiers/tier_manager.h): creation, the Tier operations
// across the tiers, usage and counters. The internals and the split over files are in
// tiers/tier_manager_impl.h; copies between tiers are in tier_manager_promotion.cc.
#include "tiers/tier_manager_impl.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "tiers/block_allocator.h"

namespace kvstash::tiers {
namespace {

uint64_t WallNowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// Merges two key-ordered lists; where both hold a key, `first`'s entry wins.
std::vector<BlockMeta> MergeByKey(std::vector<BlockMeta> first, std::vector<BlockMeta> second) {
  std::vector<BlockMeta> merged;
  merged.reserve(first.size() + second.size());
  size_t i = 0;
  size_t j = 0;
  while (i < first.size() || j < second.size()) {
    if (j == second.size() || (i < first.size() && first[i].key <= second[j].key)) {
      if (j < second.size() && first[i].key == second[j].key) ++j;
      merged.push_back(std::move(first[i++]));
    } else {
      merged.push_back(std::move(second[j++]));
    }
  }
  return merged;
}

}  // namespace

uint64_t TierManager::Impl::ToUnixMs(uint64_t clock_ms) const {
  const uint64_t now = clock().NowMs();
  const uint64_t age = now > clock_ms ? now - clock_ms : 0;
  const uint64_t wall = WallNowMs();
  return wall > age ? wall - age : 1;
}

uint64_t TierManager::Impl::FromUnixMs(uint64_t unix_ms) const {
  const uint64_t now = clock().NowMs();
  if (unix_ms == 0) return now;
  const uint64_t wall = WallNowMs();
  const uint64_t age = wall > unix_ms ? wall - unix_ms : 0;
  return now > age ? now - age : 0;
}

BlockMeta TierManager::Impl::MetaFromSsd(const SsdBlockInfo& info) const {
  BlockMeta m;
  m.key = info.key;
  m.tier = TierKind::kSsd;
  m.size = info.size;
  m.checksum = info.checksum;
  m.parent = info.parent;
  m.generation = info.generation;
  m.hits = info.hits;
  m.created_ms = FromUnixMs(info.created_unix_ms);
  m.last_access_ms = m.created_ms;
  m.owner = info.owner;
  return m;
}

Result<std::unique_ptr<TierManager>> TierManager::Create(const TierManagerOptions& options) {
  if (options.dram.on_evict) return InvalidArgument("dram.on_evict is reserved for the TierManager");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  Impl* d = impl.get();
  DramTierOptions dram_options = options.dram;
  if (options.ssd) {
    if (options.demotion_queue_bytes < BlockAllocator::RoundUp(options.ssd->max_block_bytes)) {
      return InvalidArgument("demotion_queue_bytes (" + std::to_string(options.demotion_queue_bytes) +
                             ") must hold one block of ssd max_block_bytes (" +
                             std::to_string(options.ssd->max_block_bytes) + ")");
    }
    KVSTASH_ASSIGN_OR_RETURN(d->demotion,
                             DemotionQueue::Create(options.demotion_queue_bytes, options.demotion_batch_blocks));
    DemotionQueue* q = d->demotion.get();
    dram_options.on_evict = [q](const BlockMeta& meta, std::span<const std::byte> bytes) { q->Offer(meta, bytes); };
    // DRAM's victims go to this SSD: its policy replays the pair (tiers/lru_guard_policy.h).
    const SsdTierOptions& ssd = *options.ssd;
    dram_options.lower_tier = EvictionPolicy::LowerTier{
        ssd.segment_bytes == 0 ? 0 : ssd.capacity_bytes / ssd.segment_bytes * ssd.segment_bytes, ssd.segment_bytes,
        ssd.reinsert_min_hits, ssd.reinsert_max_fraction};
  }
  KVSTASH_ASSIGN_OR_RETURN(d->dram, DramTier::Create(dram_options));
  if (options.hbm) {
    KVSTASH_ASSIGN_OR_RETURN(
        HbmAttachment hbm,
        options.hbm([d](const BlockMeta& meta, std::span<const std::byte> bytes) { d->OnHbmEvict(meta, bytes); }));
    if (!hbm.tier || hbm.bytes == nullptr) return InvalidArgument("the hbm factory returned no tier or no byte access");
    d->hbm = std::move(hbm.tier);
    d->hbm_bytes = hbm.bytes;
    d->hbm_arena = hbm.arena;
    d->hbm_policy = std::move(hbm.policy_name);
  }
  if (options.ssd) {
    SsdTierOptions ssd_options = *options.ssd;
    ssd_options.io_memory.push_back(std::span<std::byte>(d->dram->arena_base(), d->dram->arena_bytes()));
    ssd_options.io_memory.push_back(d->demotion->staging_memory());
    KVSTASH_ASSIGN_OR_RETURN(d->ssd, SsdTier::Open(ssd_options));
    d->demotion->Start(
        *d->ssd, [d](const std::vector<BlockKey>& keys) { return d->HeldInHbm(keys); },
        [d](uint64_t clock_ms) { return d->ToUnixMs(clock_ms); });
  }
  return std::unique_ptr<TierManager>(new TierManager(std::move(impl)));
}

TierManager::TierManager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TierManager::~TierManager() {
  // Before the worker stops: nothing evicts into DRAM afterwards. Taken out under hbm_mu, which the
  // worker holds while it uses the tier (TSAN saw this reset race the worker's read), and destroyed
  // outside it: its evictions into DRAM may wait for the worker.
  std::unique_ptr<Tier> hbm;
  {
    MutexLock hbm_lock(impl_->hbm_mu);
    hbm = std::move(impl_->hbm);
  }
  hbm.reset();
  if (impl_->demotion) impl_->demotion->Stop();
}

Result<Reservation> TierManager::Reserve(const BlockKey& key, uint64_t size, const std::optional<BlockKey>& parent,
                                         uint64_t timeout_ms, OwnerId owner) {
  if (impl_->hbm && impl_->hbm->Peek(key)) {
    return AlreadyExists("block " + key.ToHex() + " is already stored (hbm)");
  }
  if (impl_->ssd && impl_->ssd->Contains(key)) {
    return AlreadyExists("block " + key.ToHex() + " is already stored (ssd)");
  }
  return impl_->dram->Reserve(key, size, parent, timeout_ms, owner);
}

Result<BlockMeta> TierManager::Commit(uint64_t reservation_id, uint64_t checksum, bool pin) {
  Impl& d = *impl_;
  if (!d.hbm) return d.dram->Commit(reservation_id, checksum, pin);
  Result<Reservation> r = d.dram->GetReservation(reservation_id);
  if (!r.ok()) return d.dram->Commit(reservation_id, checksum, pin);  // its own NOT_FOUND
  Result<BlockMeta> placed = d.PlaceInHbm(*r, checksum, pin);
  if (placed.ok()) {
    (void)d.dram->Abort(reservation_id);  // the landing region goes back
    d.hbm_placed.fetch_add(1, std::memory_order_relaxed);
    return placed;
  }
  // HBM is full of leased/pinned/reserved blocks, or the bytes do not match (then DRAM's commit
  // reports DATA_LOSS and leaves the reservation open, as the contract says).
  Result<BlockMeta> committed = d.dram->Commit(reservation_id, checksum, pin);
  if (committed.ok()) d.hbm_place_fallbacks.fetch_add(1, std::memory_order_relaxed);
  return committed;
}

Status TierManager::Abort(uint64_t reservation_id) { return impl_->dram->Abort(reservation_id); }

Result<Reservation> TierManager::GetReservation(uint64_t reservation_id) const {
  return impl_->dram->GetReservation(reservation_id);
}

std::optional<BlockMeta> TierManager::Find(const BlockKey& key, uint64_t lease_ms) {
  if (auto meta = impl_->dram->Find(key, lease_ms)) return meta;
  if (!impl_->ssd && !impl_->hbm) return std::nullopt;
  // Twice: a promoted block may be evicted again before this thread leases it.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!impl_->Promote(key).ok()) return std::nullopt;
    if (auto meta = impl_->dram->Find(key, lease_ms)) return meta;
  }
  return std::nullopt;
}

std::optional<BlockMeta> TierManager::FindForDeviceReader(const BlockKey& key, uint64_t lease_ms) {
  if (impl_->hbm) {
    if (std::optional<BlockMeta> meta = impl_->hbm->Find(key, lease_ms)) {
      if (meta->lease_epoch != 0) meta->lease_epoch |= kHbmLeaseEpochBit;
      impl_->hbm_direct_finds.fetch_add(1, std::memory_order_relaxed);
      return meta;
    }
  }
  return Find(key, lease_ms);
}

Status TierManager::ReleaseLease(const BlockKey& key, uint64_t lease_epoch) {
  if ((lease_epoch & kHbmLeaseEpochBit) != 0) {
    if (!impl_->hbm) return NotFound("block " + key.ToHex() + " is not stored (no HBM tier)");
    return impl_->hbm->ReleaseLease(key, lease_epoch & ~kHbmLeaseEpochBit);
  }
  Status st = impl_->dram->ReleaseLease(key, lease_epoch);
  if (st.code() != StatusCode::kNotFound) return st;
  if (impl_->hbm && impl_->hbm->Peek(key)) return Status::Ok();
  if (impl_->ssd && impl_->ssd->Contains(key)) return Status::Ok();
  return st;
}

std::optional<BlockMeta> TierManager::Peek(const BlockKey& key) const {
  if (auto meta = impl_->dram->Peek(key)) return meta;
  if (impl_->hbm) {
    if (auto meta = impl_->hbm->Peek(key)) return meta;
  }
  if (!impl_->ssd) return std::nullopt;
  if (auto info = impl_->ssd->Lookup(key)) return impl_->MetaFromSsd(*info);
  // Acknowledged and evicted from DRAM, not yet on SSD: still stored (Read and Find serve it).
  return impl_->demotion->Peek(key);
}

Result<BlockMeta> TierManager::Read(const BlockKey& key, std::span<std::byte> out) {
  Result<BlockMeta> read = impl_->dram->Read(key, out);
  if (read.ok() || read.status().code() != StatusCode::kNotFound) return read;
  if (impl_->hbm) {
    Result<BlockMeta> from_hbm = impl_->hbm->Read(key, out);
    if (from_hbm.ok()) impl_->hbm_reads.fetch_add(1, std::memory_order_relaxed);
    if (from_hbm.ok() || from_hbm.status().code() != StatusCode::kNotFound) return from_hbm;
  }
  if (!impl_->ssd) return read;
  for (int attempt = 0; attempt < 2; ++attempt) {
    Status promoted = impl_->Promote(key);
    if (promoted.code() == StatusCode::kNotFound || promoted.code() == StatusCode::kDataLoss) return read;
    if (!promoted.ok()) break;
    Result<BlockMeta> again = impl_->dram->Read(key, out);
    if (again.ok() || again.status().code() != StatusCode::kNotFound) return again;
  }
  // DRAM cannot hold it now: copy straight from SSD, or from the demotion queue's staging copy.
  Result<SsdBlockInfo> direct = impl_->ssd->Read(key, out);
  if (!direct.ok()) {
    if (direct.status().code() == StatusCode::kOutOfRange) return direct.status();
    Result<BlockMeta> queued = impl_->ReadFromDemotionQueue(key, out);
    if (queued.ok() || queued.status().code() == StatusCode::kOutOfRange) return queued;
    return read;
  }
  impl_->ssd_direct_reads.fetch_add(1, std::memory_order_relaxed);
  return impl_->MetaFromSsd(*direct);
}

Status TierManager::Remove(const BlockKey& key) {
  Impl& d = *impl_;
  Status dram_st = d.dram->Remove(key);
  if (!dram_st.ok() && dram_st.code() != StatusCode::kNotFound) return dram_st;
  bool found = dram_st.ok();
  if (d.hbm) {
    Status hbm_st = d.hbm->Remove(key);
    if (!hbm_st.ok() && hbm_st.code() != StatusCode::kNotFound) return hbm_st;
    found = found || hbm_st.ok();
  }
  if (!d.ssd) return found ? Status::Ok() : NotFound("block " + key.ToHex() + " is not stored");
  // A queued victim was not on SSD when queued (and reaches it only through the queue); an
  // in-flight one is removed by the worker after its write. Neither needs the SSD's writer lock.
  if (d.demotion->Cancel(key)) return Status::Ok();
  Status ssd_st = d.ssd->Remove(key);
  if (ssd_st.ok()) found = true;
  if (!ssd_st.ok() && ssd_st.code() != StatusCode::kNotFound) return ssd_st;
  return found ? Status::Ok() : NotFound("block " + key.ToHex() + " is not stored");
}

Status TierManager::SetPinned(const BlockKey& key, bool pinned) {
  Status st = impl_->dram->SetPinned(key, pinned);
  if (!st.ok() && st.code() != StatusCode::kNotFound) return st;
  bool found = st.ok();
  if (impl_->hbm) {
    Status hbm_st = impl_->hbm->SetPinned(key, pinned);
    if (!hbm_st.ok() && hbm_st.code() != StatusCode::kNotFound) return hbm_st;
    found = found || hbm_st.ok();
  }
  if (found) return Status::Ok();
  if (!impl_->ssd || !impl_->ssd->Contains(key)) return st;
  if (!pinned) return Status::Ok();  // SSD blocks are never pinned
  for (int attempt = 0; attempt < 2; ++attempt) {
    KVSTASH_RETURN_IF_ERROR(impl_->Promote(key));
    st = impl_->dram->SetPinned(key, true);
    if (st.code() != StatusCode::kNotFound) return st;
  }
  return st;
}

Status TierManager::Advise(const BlockKey& key, ReuseAdvice advice) {
  Status st = impl_->dram->Advise(key, advice);
  if (impl_->hbm) {
    Status hbm_st = impl_->hbm->Advise(key, advice);
    if (hbm_st.ok()) return hbm_st;
  }
  return st;
}

ListPage TierManager::List(const std::optional<BlockKey>& after, size_t limit) const {
  ListPage dram_page = impl_->dram->List(after, limit);
  if (!impl_->ssd && !impl_->hbm) return dram_page;
  bool more = dram_page.next_after.has_value();
  std::vector<BlockMeta> merged = std::move(dram_page.blocks);
  if (impl_->hbm) {
    ListPage hbm_page = impl_->hbm->List(after, limit);
    more = more || hbm_page.next_after.has_value();
    merged = MergeByKey(std::move(merged), std::move(hbm_page.blocks));  // a DRAM copy wins
  }
  if (impl_->ssd) {
    std::vector<SsdBlockInfo> ssd_blocks = impl_->ssd->List(after, limit);
    more = more || ssd_blocks.size() >= limit;
    std::vector<BlockMeta> ssd_metas;
    ssd_metas.reserve(ssd_blocks.size());
    for (const SsdBlockInfo& info : ssd_blocks) ssd_metas.push_back(impl_->MetaFromSsd(info));
    merged = MergeByKey(std::move(merged), std::move(ssd_metas));
  }
  ListPage page;
  if (merged.size() > limit) {
    merged.resize(limit);
    more = true;
  }
  page.blocks = std::move(merged);
  if (more) page.next_after = page.blocks.empty() ? after : std::optional<BlockKey>(page.blocks.back().key);
  return page;
}

size_t TierManager::ReclaimExpired() {
  return impl_->dram->ReclaimExpired() + (impl_->hbm ? impl_->hbm->ReclaimExpired() : 0);
}

TierUsage TierManager::Usage() const {
  TierUsage u = impl_->dram->Usage();
  if (impl_->hbm) {
    const TierUsage h = impl_->hbm->Usage();
    u.capacity_bytes += h.capacity_bytes;
    u.used_bytes += h.used_bytes;
    u.reserved_bytes += h.reserved_bytes;
    u.blocks += h.blocks;
    u.reservations += h.reservations;
    u.leased_blocks += h.leased_blocks;
    u.pinned_blocks += h.pinned_blocks;
  }
  if (impl_->ssd) {
    const SsdUsage s = impl_->ssd->Usage();
    u.capacity_bytes += s.capacity_bytes;
    u.used_bytes += s.live_bytes;
    u.blocks += s.blocks;
  }
  return u;
}

TierCounters TierManager::Counters() const { return impl_->dram->Counters(); }

std::vector<TierUsageEntry> TierManager::UsageByTier() const {
  std::vector<TierUsageEntry> out;
  if (impl_->hbm) out.push_back({TierKind::kHbm, impl_->hbm->Usage()});
  out.push_back({TierKind::kDram, impl_->dram->Usage()});
  if (impl_->ssd) {
    const SsdUsage s = impl_->ssd->Usage();
    TierUsage u;
    u.capacity_bytes = s.capacity_bytes;
    u.used_bytes = s.live_bytes;
    u.blocks = s.blocks;
    out.push_back({TierKind::kSsd, u});
  }
  return out;
}

TierManagerCounters TierManager::ManagerCounters() const {
  const Impl& d = *impl_;
  TierManagerCounters c;
  if (d.demotion) {
    const DemotionQueueCounters q = d.demotion->Counters();
    c.demotions_queued = q.queued;
    c.demoted = q.written;
    c.demotions_already_on_ssd = q.already_on_ssd;
    c.demotions_dropped_full = q.dropped_full;
    c.demotions_failed = q.failed;
    c.demotions_cancelled = q.cancelled;
    c.demotions_skipped_in_hbm = q.skipped_held_above;
    c.demotion_queue_reads = q.staging_reads;
  }
  c.promotions = d.promotions.load(std::memory_order_relaxed);
  c.promotions_failed = d.promotions_failed.load(std::memory_order_relaxed);
  c.ssd_direct_reads = d.ssd_direct_reads.load(std::memory_order_relaxed);
  c.hbm_placed = d.hbm_placed.load(std::memory_order_relaxed);
  c.hbm_place_fallbacks = d.hbm_place_fallbacks.load(std::memory_order_relaxed);
  c.hbm_demoted = d.hbm_demoted.load(std::memory_order_relaxed);
  c.hbm_demotions_in_dram = d.hbm_demotions_in_dram.load(std::memory_order_relaxed);
  c.hbm_demotions_to_ssd = d.hbm_demotions_to_ssd.load(std::memory_order_relaxed);
  c.hbm_demotions_dropped = d.hbm_demotions_dropped.load(std::memory_order_relaxed);
  c.hbm_promotions = d.hbm_promotions.load(std::memory_order_relaxed);
  c.hbm_promotions_failed = d.hbm_promotions_failed.load(std::memory_order_relaxed);
  c.hbm_reads = d.hbm_reads.load(std::memory_order_relaxed);
  c.hbm_direct_finds = d.hbm_direct_finds.load(std::memory_order_relaxed);
  if (d.ssd) c.ssd = d.ssd->Counters();
  return c;
}

void TierManager::DrainDemotions() {
  Impl& d = *impl_;
  if (d.demotion) d.demotion->Drain();
}

DramTier& TierManager::dram() const { return *impl_->dram; }
SsdTier* TierManager::ssd() const { return impl_->ssd.get(); }
Tier* TierManager::hbm() const { return impl_->hbm.get(); }
const std::string& TierManager::hbm_policy_name() const { return impl_->hbm_policy; }
std::span<std::byte> TierManager::hbm_arena() const { return impl_->hbm ? impl_->hbm_arena : std::span<std::byte>{}; }
const ByteAccess* TierManager::hbm_bytes() const { return impl_->hbm ? impl_->hbm_bytes : nullptr; }
std::vector<BlockMeta> TierManager::Hottest(size_t n) const { return impl_->dram->Hottest(n); }
std::vector<OwnerUsage> TierManager::DramOwnerUsage() const { return impl_->dram->OwnerUsages(); }
std::vector<OwnerUsage> TierManager::SsdOwnerUsage() const {
  return impl_->ssd ? impl_->ssd->OwnerUsages() : std::vector<OwnerUsage>{};
}
TierCounters TierManager::HbmCounters() const { return impl_->hbm ? impl_->hbm->Counters() : TierCounters{}; }

}  // namespace kvstash::tiers
