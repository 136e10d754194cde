// DemotionQueue implementation (contract in tiers/demotion_queue.h).
//
// `queued_` maps each waiting key to its list node so Cancel can take it out; `in_flight_` holds the
// victims the worker is writing now and `cancel_after_write_` those cancelled meanwhile, which the
// worker removes from the SSD afterwards. `enqueued_total_` and `finished_total_` let Drain wait
// for everything queued before it.
#include "tiers/demotion_queue.h"

#include <cstring>
#include <string>

namespace kvstash::tiers {

static_assert(BlockAllocator::kGranule == SsdTier::kAlignment,
              "DRAM and staging ranges must be padded exactly as the SSD pads its records");

Result<std::unique_ptr<DemotionQueue>> DemotionQueue::Create(uint64_t staging_bytes, size_t batch_blocks) {
  if (batch_blocks == 0) return InvalidArgument("demotion_batch_blocks must be > 0");
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<Arena> staging, Arena::Map(staging_bytes, ArenaHugePages::kNever));
  return std::unique_ptr<DemotionQueue>(new DemotionQueue(std::move(staging), batch_blocks));
}

DemotionQueue::DemotionQueue(std::unique_ptr<Arena> staging, size_t batch_blocks)
    : staging_(std::move(staging)), staging_alloc_(staging_->size()), batch_blocks_(batch_blocks) {}

DemotionQueue::~DemotionQueue() { Stop(); }

std::span<std::byte> DemotionQueue::staging_memory() const {
  return std::span<std::byte>(staging_->base(), staging_->size());
}

void DemotionQueue::Start(SsdTier& ssd, HeldAbove held_above, ToUnixMs to_unix_ms) {
  ssd_ = &ssd;
  held_above_ = std::move(held_above);
  to_unix_ms_ = std::move(to_unix_ms);
  worker_ = std::thread([this] { Work(); });
}

void DemotionQueue::Stop() {
  if (!worker_.joinable()) return;
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  worker_.join();
}

void DemotionQueue::Offer(const BlockMeta& meta, std::span<const std::byte> bytes) {
  if (ssd_->Contains(meta.key)) {
    already_on_ssd_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  {
    MutexLock lock(mu_);
    if (queued_.contains(meta.key)) {
      // A copy promoted from the queue, evicted again before the writer took the victim: the
      // queued copy goes down. Counted, so every eviction has exactly one outcome.
      already_on_ssd_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  std::optional<uint64_t> offset = staging_alloc_.Allocate(bytes.size());
  if (!offset) {
    dropped_full_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::byte* dst = staging_->base() + *offset;
  std::memcpy(dst, bytes.data(), bytes.size());
  // The pad is written to disk too; keep it deterministic rather than stale staging bytes.
  std::memset(dst + bytes.size(), 0, BlockAllocator::RoundUp(bytes.size()) - bytes.size());
  {
    MutexLock lock(mu_);
    queue_.push_back(QueuedVictim{meta.key, meta.parent, meta.size, meta.checksum, *offset, meta.created_ms, meta.owner});
    queued_[meta.key] = std::prev(queue_.end());
    ++enqueued_total_;
  }
  queued_count_.fetch_add(1, std::memory_order_relaxed);
  work_cv_.notify_one();
}

bool DemotionQueue::Cancel(const BlockKey& key) {
  bool cancelled = false;
  {
    MutexLock lock(mu_);
    auto it = queued_.find(key);
    if (it != queued_.end()) {
      staging_alloc_.Free(it->second->offset, it->second->size);
      queue_.erase(it->second);
      queued_.erase(it);
      ++finished_total_;
      cancelled = true;
    } else if (in_flight_.contains(key)) {
      cancel_after_write_.insert(key);
      cancelled = true;
    }
  }
  if (cancelled) cancelled_.fetch_add(1, std::memory_order_relaxed);
  idle_cv_.notify_all();
  return cancelled;
}

std::optional<BlockMeta> DemotionQueue::Peek(const BlockKey& key) const {
  MutexLock lock(mu_);
  if (auto it = queued_.find(key); it != queued_.end()) return MetaOf(*it->second);
  if (auto it = in_flight_.find(key); it != in_flight_.end()) return MetaOf(it->second);
  return std::nullopt;
}

std::optional<QueuedVictim> DemotionQueue::WaitQueued(const BlockKey& key) {
  MutexLock lock(mu_);
  lock.Wait(idle_cv_, [&] { mu_.AssertHeld(); return !in_flight_.contains(key); });
  auto it = queued_.find(key);
  if (it == queued_.end()) return std::nullopt;
  return *it->second;
}

Status DemotionQueue::CopyIfStillQueued(const QueuedVictim& v, std::byte* dst) const {
  MutexLock lock(mu_);
  auto it = queued_.find(v.key);
  if (it == queued_.end() || it->second->offset != v.offset) return Aborted("left the demotion queue");
  std::memcpy(dst, staging_->base() + v.offset, v.size);
  return Status::Ok();
}

Result<BlockMeta> DemotionQueue::ReadQueued(const BlockKey& key, std::span<std::byte> out) {
  MutexLock lock(mu_);
  lock.Wait(idle_cv_, [&] { mu_.AssertHeld(); return !in_flight_.contains(key); });
  auto it = queued_.find(key);
  if (it == queued_.end()) return NotFound("block " + key.ToHex() + " is not queued for ssd");
  const QueuedVictim& v = *it->second;
  if (out.size() < v.size) {
    return OutOfRange("buffer of " + std::to_string(out.size()) + " bytes is smaller than block " + key.ToHex());
  }
  std::memcpy(out.data(), staging_->base() + v.offset, v.size);
  staging_reads_.fetch_add(1, std::memory_order_relaxed);
  return MetaOf(v);
}

void DemotionQueue::Drain() {
  MutexLock lock(mu_);
  const uint64_t target = enqueued_total_;
  lock.Wait(idle_cv_, [&] { mu_.AssertHeld(); return finished_total_ >= target; });
}

DemotionQueueCounters DemotionQueue::Counters() const {
  DemotionQueueCounters c;
  c.queued = queued_count_.load(std::memory_order_relaxed);
  c.written = written_.load(std::memory_order_relaxed);
  c.already_on_ssd = already_on_ssd_.load(std::memory_order_relaxed);
  c.dropped_full = dropped_full_.load(std::memory_order_relaxed);
  c.failed = failed_.load(std::memory_order_relaxed);
  c.cancelled = cancelled_.load(std::memory_order_relaxed);
  c.skipped_held_above = skipped_held_above_.load(std::memory_order_relaxed);
  c.staging_reads = staging_reads_.load(std::memory_order_relaxed);
  return c;
}

BlockMeta DemotionQueue::MetaOf(const QueuedVictim& v) {
  BlockMeta m;
  m.key = v.key;
  m.tier = TierKind::kSsd;
  m.size = v.size;
  m.checksum = v.checksum;
  m.parent = v.parent;
  m.created_ms = v.created_ms;
  m.last_access_ms = v.created_ms;
  m.owner = v.owner;
  return m;
}

void DemotionQueue::Work() {
  for (;;) {
    std::vector<QueuedVictim> batch = TakeBatch();
    if (batch.empty()) return;  // stop, and everything queued is written
    batch = DropHeldAbove(std::move(batch));
    if (batch.empty()) continue;
    WriteBatch(batch);
    FinishBatch(batch);
  }
}

std::vector<QueuedVictim> DemotionQueue::TakeBatch() {
  MutexLock lock(mu_);
  lock.Wait(work_cv_, [&] { mu_.AssertHeld(); return stop_ || !queue_.empty(); });
  std::vector<QueuedVictim> batch;
  while (!queue_.empty() && batch.size() < batch_blocks_) {
    const QueuedVictim& v = queue_.front();
    batch.push_back(v);
    queued_.erase(v.key);
    in_flight_.emplace(v.key, v);
    queue_.pop_front();
  }
  return batch;
}

std::vector<QueuedVictim> DemotionQueue::DropHeldAbove(std::vector<QueuedVictim> batch) {
  if (!held_above_) return batch;
  std::vector<BlockKey> keys;
  keys.reserve(batch.size());
  for (const QueuedVictim& v : batch) keys.push_back(v.key);
  const std::vector<bool> held = held_above_(keys);
  if (held.size() != batch.size()) return batch;  // nothing above DRAM
  std::vector<QueuedVictim> keep;
  std::vector<BlockKey> skipped;
  keep.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    if (held[i]) {
      staging_alloc_.Free(batch[i].offset, batch[i].size);
      skipped.push_back(batch[i].key);
      skipped_held_above_.fetch_add(1, std::memory_order_relaxed);
    } else {
      keep.push_back(std::move(batch[i]));
    }
  }
  if (skipped.empty()) return keep;
  {
    MutexLock lock(mu_);
    for (const BlockKey& key : skipped) {
      in_flight_.erase(key);
      cancel_after_write_.erase(key);
    }
    finished_total_ += skipped.size();
  }
  idle_cv_.notify_all();
  return keep;
}

void DemotionQueue::WriteBatch(const std::vector<QueuedVictim>& batch) {
  std::vector<SsdWrite> writes(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const QueuedVictim& v = batch[i];
    writes[i] = SsdWrite{v.key, v.parent,
                         std::span<const std::byte>(staging_->base() + v.offset, BlockAllocator::RoundUp(v.size)),
                         v.size, v.checksum, to_unix_ms_(v.created_ms), v.owner};
  }
  const std::vector<Status> results = ssd_->Write(writes);
  for (size_t i = 0; i < batch.size(); ++i) {
    if (results[i].ok()) {
      written_.fetch_add(1, std::memory_order_relaxed);
    } else if (results[i].code() == StatusCode::kAlreadyExists) {
      already_on_ssd_.fetch_add(1, std::memory_order_relaxed);
    } else {
      failed_.fetch_add(1, std::memory_order_relaxed);
    }
    staging_alloc_.Free(batch[i].offset, batch[i].size);
  }
}

void DemotionQueue::FinishBatch(const std::vector<QueuedVictim>& batch) {
  MutexLock lock(mu_);
  std::vector<BlockKey> cancelled;
  for (const QueuedVictim& v : batch) {
    in_flight_.erase(v.key);
    if (cancel_after_write_.erase(v.key) > 0) cancelled.push_back(v.key);
  }
  if (!cancelled.empty()) {
    lock.Unlock();  // not held across the SSD's I/O: Offer waits on this mutex under DRAM's locks
    for (const BlockKey& key : cancelled) (void)ssd_->Remove(key);  // NOT_FOUND when the write failed
    lock.Lock();
  }
  finished_total_ += batch.size();
  idle_cv_.notify_all();
}

}  // namespace kvstash::tiers
