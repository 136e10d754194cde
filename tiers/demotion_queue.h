// DemotionQueue: DRAM eviction victims on their way to the SSD (docs/ARCHITECTURE.md §4,
// "Demotion"; the TierManager's contract in tiers/tier_manager.h says what a caller sees).
//
// Offer (the DRAM tier's eviction hook) copies a victim into a staging arena and queues it; it
// never waits for the SSD: a full staging area drops the victim and counts it. One worker thread
// writes queued victims to the SSD in batches of `batch_blocks` (one SsdTier::Write call each),
// skipping those a tier above DRAM still holds (`held_above`). Staging ranges are carved by a
// BlockAllocator in 4 KiB granules, so every victim is aligned and padded as the SSD writes it
// (no copy), and the arena is registered with the SSD's I/O engine (staging_memory()).
//
// Until the worker has written it, a victim stays readable: Peek describes it, ReadQueued copies
// it out, WaitQueued + CopyIfStillQueued let a promotion copy it back into DRAM. A victim the worker
// is writing at that moment is waited for (it is on the SSD afterwards). Cancel (a Remove) frees a
// queued victim at once; one being written is removed from the SSD after its write.
//
// Counters: every Offer has exactly one outcome (queued, already_on_ssd or dropped_full); every
// queued victim ends written, already_on_ssd, failed, cancelled or skipped_held_above.
//
// Thread-safety: every method may be called from any thread. Lock order: the queue's mutex has
// rank lock_order::kDemotionQueue — Offer runs under the DRAM tier's locks, and the mutex is never
// held across a call into another tier (the worker writes to the SSD and asks `held_above` without
// it), so nothing above it is ever taken under it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/mutex.h"
#include "tiers/arena.h"
#include "tiers/block_allocator.h"
#include "tiers/ssd_tier.h"
#include "tiers/tier.h"

namespace kvstash::tiers {

// A victim waiting in (or being written from) the staging arena.
struct QueuedVictim {
  BlockKey key;
  std::optional<BlockKey> parent;
  uint64_t size = 0;
  uint64_t checksum = 0;
  uint64_t offset = 0;      // in the staging arena
  uint64_t created_ms = 0;  // the DRAM tier's clock
  OwnerId owner = kNoOwner; // who it is charged to, in DRAM and on the SSD
};

struct DemotionQueueCounters {
  uint64_t queued = 0;              // victims copied into staging
  uint64_t written = 0;             // written to the SSD
  uint64_t already_on_ssd = 0;      // nothing to write: on SSD, or queued for it already
  uint64_t dropped_full = 0;        // staging area full: victim dropped
  uint64_t failed = 0;              // the SSD refused the write
  uint64_t cancelled = 0;           // removed while queued or being written
  uint64_t skipped_held_above = 0;  // not written: a tier above DRAM still holds the block
  uint64_t staging_reads = 0;       // ReadQueued served from a staging copy
};

class DemotionQueue {
 public:
  // For each key of a batch, whether a tier above DRAM still holds it (its victim is then not
  // written: that copy stays authoritative). An empty answer means none. Called on the worker
  // thread, without the queue's mutex.
  using HeldAbove = std::function<std::vector<bool>(const std::vector<BlockKey>&)>;
  // A DRAM-clock time as wall-clock milliseconds (the SSD keeps wall-clock creation times).
  using ToUnixMs = std::function<uint64_t(uint64_t)>;

  // Maps a staging arena of `staging_bytes`. INVALID_ARGUMENT for batch_blocks 0; errors of
  // Arena::Map.
  static Result<std::unique_ptr<DemotionQueue>> Create(uint64_t staging_bytes, size_t batch_blocks);
  ~DemotionQueue();  // Stop()
  DemotionQueue(const DemotionQueue&) = delete;
  DemotionQueue& operator=(const DemotionQueue&) = delete;

  // The staging arena, to be registered with the SSD's I/O engine before Start.
  std::span<std::byte> staging_memory() const;

  // Starts the worker, which writes to `ssd`. Call once; `ssd` must outlive Stop(). REQUIRES:
  // Start before the first Offer.
  void Start(SsdTier& ssd, HeldAbove held_above, ToUnixMs to_unix_ms);
  // Writes every queued victim, then stops the worker. Idempotent; later Offers are not written.
  void Stop() EXCLUDES(mu_);

  // Takes one DRAM victim: nothing when the SSD holds it or it is queued already, dropped when
  // staging is full, otherwise copied and queued. Runs under the DRAM tier's locks; never blocks on
  // the SSD.
  void Offer(const BlockMeta& meta, std::span<const std::byte> bytes) EXCLUDES(mu_);
  // Cancels a victim's demotion. True when the queue held it (queued or being written).
  bool Cancel(const BlockKey& key) EXCLUDES(mu_);

  // The victim of `key` as the SSD will report it (tier ssd, no address), if queued or being written.
  std::optional<BlockMeta> Peek(const BlockKey& key) const EXCLUDES(mu_);
  // Waits while the worker writes `key`; then returns the victim if it is still queued.
  std::optional<QueuedVictim> WaitQueued(const BlockKey& key) EXCLUDES(mu_);
  // Copies `v`'s bytes into `dst` (v.size bytes) when it is still queued at the same place (neither
  // taken by the worker nor cancelled); ABORTED otherwise.
  Status CopyIfStillQueued(const QueuedVictim& v, std::byte* dst) const EXCLUDES(mu_);
  // WaitQueued, then copies the victim into `out`. NOT_FOUND when not queued; OUT_OF_RANGE when
  // `out` is smaller than the block.
  Result<BlockMeta> ReadQueued(const BlockKey& key, std::span<std::byte> out) EXCLUDES(mu_);

  // Returns once every victim queued before the call has been written, dropped or cancelled.
  void Drain() EXCLUDES(mu_);
  DemotionQueueCounters Counters() const;

  // A victim as the SSD will report it.
  static BlockMeta MetaOf(const QueuedVictim& v);

 private:
  DemotionQueue(std::unique_ptr<Arena> staging, size_t batch_blocks);

  void Work();
  // Waits for work; moves up to batch_blocks victims from the queue to in_flight. Empty: stop, and
  // nothing is left to write.
  std::vector<QueuedVictim> TakeBatch() EXCLUDES(mu_);
  // Finishes (without writing) the victims a tier above still holds; returns the others.
  std::vector<QueuedVictim> DropHeldAbove(std::vector<QueuedVictim> batch) EXCLUDES(mu_);
  // Writes a batch to the SSD, counts each outcome and frees its staging.
  void WriteBatch(const std::vector<QueuedVictim>& batch);
  // Takes a written batch out of in_flight, removing from the SSD those cancelled meanwhile.
  void FinishBatch(const std::vector<QueuedVictim>& batch) EXCLUDES(mu_);

  const std::unique_ptr<Arena> staging_;
  BlockAllocator staging_alloc_;
  const size_t batch_blocks_;
  SsdTier* ssd_ = nullptr;  // set by Start
  HeldAbove held_above_;
  ToUnixMs to_unix_ms_;

  // Ranked after the DRAM tier's locks (DRAM's eviction hook enqueues under them) and before the
  // SSD tier's (the worker writes to the SSD without it).
  mutable Mutex mu_{lock_order::kDemotionQueue};
  std::condition_variable work_cv_;  // work arrived, or stop
  mutable std::condition_variable idle_cv_;  // a batch finished, or a victim was cancelled
  std::list<QueuedVictim> queue_ GUARDED_BY(mu_);
  std::unordered_map<BlockKey, std::list<QueuedVictim>::iterator, BlockKeyHash> queued_ GUARDED_BY(mu_);
  std::unordered_map<BlockKey, QueuedVictim, BlockKeyHash> in_flight_ GUARDED_BY(mu_);
  std::unordered_set<BlockKey, BlockKeyHash> cancel_after_write_ GUARDED_BY(mu_);
  uint64_t enqueued_total_ GUARDED_BY(mu_) = 0;
  uint64_t finished_total_ GUARDED_BY(mu_) = 0;  // written, failed, skipped or cancelled
  bool stop_ GUARDED_BY(mu_) = false;
  std::thread worker_;

  std::atomic<uint64_t> queued_count_{0}, written_{0}, already_on_ssd_{0}, dropped_full_{0};
  std::atomic<uint64_t> failed_{0}, cancelled_{0}, skipped_held_above_{0}, staging_reads_{0};
};

}  // namespace kvstash::tiers
