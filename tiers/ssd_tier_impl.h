// SsdTier's internals, shared by its implementation files (contract in tiers/ssd_tier.h):
//   ssd_tier.cc         lookups, listing, usage and counters
//   ssd_tier_open.cc    Open: options, the index (quarantined when corrupt), recovery of the log
//   ssd_tier_write.cc   the log: planning, flushing and indexing writes, reclaim, removes
//   ssd_tier_read.cc    reads, verified as they complete
//
// Locks: write_mu_ (writers: Write, Remove, reclaim; held across their I/O) -> mu_ (the in-memory
// index, segment table and counters of space; held only for lookups and updates, never across
// I/O). Readers take mu_ alone.
//
// A write call plans its blocks into the open segment ("pending"), then flushes: all writes go
// to the engine as one batch, the successful ones are put into RocksDB in one WriteBatch and only
// then into the in-memory index. Opening a new segment never reclaims while anything is pending:
// pending blocks are flushed first, so a segment being reclaimed never has writes in flight.
//
// Each segment has an epoch, bumped (under mu_) after its index records are deleted and before
// any of its bytes is overwritten. A reader notes the epoch with the location and checks it again
// after its I/O: a change means the bytes may be torn, and the read answers NOT_FOUND.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "common/checksum.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "tiers/segment_files.h"
#include "tiers/ssd_index.h"
#include "tiers/ssd_tier.h"

namespace kvstash::tiers {
namespace ssd_detail {

// 4 KiB-aligned heap memory for bounce and reinsertion buffers.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(uint64_t bytes)
      : data_(bytes == 0 ? nullptr
                         : static_cast<std::byte*>(std::aligned_alloc(SsdTier::kAlignment, bytes))),
        size_(data_ ? bytes : 0) {}
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    return *this;
  }
  ~AlignedBuffer() { std::free(data_); }
  std::byte* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

inline bool Aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % SsdTier::kAlignment == 0; }

inline uint64_t WallNowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

inline uint64_t SteadyNowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

struct MemEntry {
  SsdEntry e;
  uint64_t hits = 0;
};

struct Segment {
  uint64_t seq = 0;   // 0: free (never filled, or not since the last restart)
  bool used = false;  // open or sealed
  uint64_t live_bytes = 0;
  std::unordered_set<BlockKey, BlockKeyHash> keys;
  std::atomic<uint64_t> epoch{0};
};

// What one owner holds on the tier (the OwnerUsage it reports, plus its blocks oldest first).
struct OwnerState {
  OwnerUsage usage;
  std::set<std::pair<uint64_t, BlockKey>> by_seq;  // (generation, key); not kept for kNoOwner
};

// A block planned into the open segment, not yet written.
struct Planned {
  BlockKey key;
  SsdEntry entry;
  const std::byte* src = nullptr;  // aligned, PaddedSize(entry.size) readable
  size_t item = SIZE_MAX;          // index into the caller's items; SIZE_MAX for a reinsertion
};

struct WriteContext {
  std::vector<Planned> pending;
  std::vector<AlignedBuffer> buffers;  // bounce and reinsertion memory, alive until the call ends
  std::vector<Status>* out = nullptr;
};

struct ReadJob;  // one block of a read pass (ssd_tier_read.cc)

}  // namespace ssd_detail

struct SsdTier::Impl {
  using AlignedBuffer = ssd_detail::AlignedBuffer;
  using MemEntry = ssd_detail::MemEntry;
  using Segment = ssd_detail::Segment;
  using Planned = ssd_detail::Planned;
  using WriteContext = ssd_detail::WriteContext;

  SsdTierOptions options;
  uint64_t segment_count = 0;
  std::unique_ptr<SsdIndex> index;
  std::unique_ptr<SegmentFiles> files;
  std::unique_ptr<IoEngine> engine;

  // The SSD tier's own locks (docs/ARCHITECTURE.md §6): below the DRAM tier and the demotion queue.
  Mutex write_mu{lock_order::kSsdTier};
  mutable Mutex mu{lock_order::kSsdTier + 1};
  std::map<BlockKey, MemEntry> blocks GUARDED_BY(mu);
  std::vector<Segment> segments;  // the table itself is fixed at Open; each entry's fields: see Segment
  std::vector<uint32_t> free_segments GUARDED_BY(write_mu);
  std::vector<uint32_t> fifo GUARDED_BY(write_mu);  // sealed segments, oldest first
  std::optional<uint32_t> open_segment GUARDED_BY(write_mu);
  uint64_t open_offset GUARDED_BY(write_mu) = 0;
  std::vector<std::pair<uint32_t, uint64_t>> unpersisted_seqs GUARDED_BY(write_mu);
  uint64_t next_seq GUARDED_BY(write_mu) = 1;
  // Blocks gone from the in-memory index whose RocksDB records are not deleted yet (the index
  // refused the write); sent with every batch until one gets through.
  std::unordered_set<BlockKey, BlockKeyHash> pending_deletes GUARDED_BY(write_mu);
  std::atomic<uint64_t> pending_deletes_count{0};
  uint64_t last_write_error_log_ms GUARDED_BY(write_mu) = 0;
  uint64_t live_bytes GUARDED_BY(mu) = 0;
  std::unordered_map<OwnerId, ssd_detail::OwnerState> owners GUARDED_BY(mu);
  std::map<OwnerId, std::string> owner_labels GUARDED_BY(mu);

  std::atomic<uint64_t> writes{0}, write_bytes{0}, write_errors{0}, no_space_errors{0};
  std::atomic<uint64_t> reads{0}, read_bytes{0}, read_errors{0}, checksum_failures{0};
  std::atomic<uint64_t> reads_raced_reclaim{0}, segments_reclaimed{0}, blocks_reclaimed{0};
  std::atomic<uint64_t> blocks_reinserted{0}, blocks_recovered{0}, records_discarded{0};
  std::atomic<uint64_t> blocks_kept_for_owners{0};

  explicit Impl(uint64_t count) : segments(count) {}

  static SsdBlockInfo InfoOf(const BlockKey& key, const MemEntry& m) {
    SsdBlockInfo i;
    i.key = key;
    i.size = m.e.size;
    i.checksum = m.e.checksum;
    i.parent = m.e.parent;
    i.generation = m.e.seq;
    i.segment = m.e.segment;
    i.offset = m.e.offset;
    i.hits = m.hits;
    i.created_unix_ms = m.e.created_unix_ms;
    i.owner = m.e.owner;
    return i;
  }

  // A key already held is replaced whole: its old segment forgets it and its sizes leave the
  // accounting, so no segment's key set ever names a key whose entry lies elsewhere (a reclaim
  // would then delete the current index record of a block it does not hold).
  void InsertLocked(const BlockKey& key, const SsdEntry& e, uint64_t hits) REQUIRES(mu) {
    if (auto old = blocks.find(key); old != blocks.end()) EraseLocked(old);
    blocks[key] = MemEntry{e, hits};
    Segment& s = segments[e.segment];
    s.keys.insert(key);
    s.live_bytes += PaddedSize(e.size);
    live_bytes += PaddedSize(e.size);
    ssd_detail::OwnerState& o = owners[e.owner];
    o.usage.owner = e.owner;
    o.usage.bytes += PaddedSize(e.size);
    ++o.usage.blocks;
    if (e.owner != kNoOwner) o.by_seq.emplace(e.seq, key);
  }

  void EraseLocked(std::map<BlockKey, MemEntry>::iterator it) REQUIRES(mu) {
    Segment& s = segments[it->second.e.segment];
    s.keys.erase(it->first);
    s.live_bytes -= PaddedSize(it->second.e.size);
    live_bytes -= PaddedSize(it->second.e.size);
    ssd_detail::OwnerState& o = owners[it->second.e.owner];
    o.usage.bytes -= PaddedSize(it->second.e.size);
    --o.usage.blocks;
    if (it->second.e.owner != kNoOwner) o.by_seq.erase({it->second.e.seq, it->first});
    blocks.erase(it);
  }

  // True when `owner` has a quota and holds no more than it (its blocks survive reclaims).
  bool ProtectedLocked(OwnerId owner) const REQUIRES(mu) {
    if (owner == kNoOwner || options.quotas == nullptr) return false;
    const uint64_t quota = options.quotas->QuotaOf(owner);
    if (quota == 0) return false;
    auto it = owners.find(owner);
    return it == owners.end() || it->second.usage.bytes <= quota;
  }

  // Makes room within `owner`'s quota for `padded` more bytes, on top of `planned` bytes of it
  // already planned in this call, by dropping its oldest blocks (their deletions go with the next
  // batch). RESOURCE_EXHAUSTED when the quota cannot hold them even with none of its blocks left.
  // REQUIRES: write_mu.
  Status MakeRoomForOwnerLocked(OwnerId owner, uint64_t padded, uint64_t planned) REQUIRES(write_mu);

  // Applies `m` to RocksDB together with every pending deletion (first, so a key deleted and
  // written again ends up written). REQUIRES: write_mu.
  Status ApplyLocked(SsdIndex::Mutation m) REQUIRES(write_mu);

  // Forgets a block now; its RocksDB record goes with this or a later batch. REQUIRES: write_mu.
  void DropLocked(const BlockKey& key, std::optional<uint64_t> only_seq) REQUIRES(write_mu);

  static Status IoError(const char* what, int64_t result) {
    const int err = static_cast<int>(-result);
    if (err == ENOSPC) return ResourceExhausted(std::string(what) + ": no space left on device");
    return Internal(std::string(what) + ": " + std::strerror(err));
  }

  // Writes every pending block, indexes the ones that made it, reports the callers' items.
  // Without `sync`, blocks are indexed in chunks as their writes complete, so RocksDB's WAL write
  // overlaps the device's work on the rest of the batch; with `sync`, only after the segment
  // files are synced. Either way a block is indexed only once its bytes are written.
  // REQUIRES: write_mu.
  void FlushLocked(WriteContext& ctx) REQUIRES(write_mu);

  // Empties the oldest sealed segment, planning its hot blocks for re-append into `ctx`, and
  // returns it (now free). REQUIRES: write_mu, nothing pending, fifo not empty.
  Result<uint32_t> ReclaimOldestLocked(WriteContext& ctx) REQUIRES(write_mu);

  // Finds room for `padded` bytes in the open segment, opening (and if need be reclaiming) the
  // next one. Returns (segment, offset). REQUIRES: write_mu.
  Result<std::pair<uint32_t, uint64_t>> AllocateLocked(uint64_t padded, WriteContext& ctx) REQUIRES(write_mu);

  // Rebuilds the in-memory state from the index. Called once, from Open.
  Status Recover();

  // Moves a corrupt index aside, starts an empty one and writes the layout into it.
  Status QuarantineIndex(const std::string& reason);

  // The steps of one read pass (ssd_tier_read.cc). LocateReads finds the `pending` items under mu
  // and answers those it cannot read in `out`; RunReads reads and verifies the jobs (returns the
  // engine's status); ReportRead sets one item's result and returns true when it raced a reclaim.
  std::vector<ssd_detail::ReadJob> LocateReads(std::span<const SsdRead> items, const std::vector<size_t>& pending,
                                               std::vector<Result<SsdBlockInfo>>& out) EXCLUDES(mu);
  Status RunReads(std::span<const SsdRead> items, std::vector<ssd_detail::ReadJob>& jobs);
  bool ReportRead(const SsdRead& item, ssd_detail::ReadJob& job, const Status& engine_status,
                  Result<SsdBlockInfo>& out) EXCLUDES(write_mu);
};

}  // namespace kvstash::tiers
