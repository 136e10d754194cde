// SsdTier: committed blocks on local NVMe, below the DRAM tier (DESIGN.md §3, §4). Its only user
// is the TierManager, so its API is narrower than Tier: no reservations, leases or pins — bytes
// come in whole (Write) and go out into caller memory (Read), normally a DRAM reservation.
//
// Layout: `dir` holds capacity_bytes / segment_bytes preallocated segment files (O_DIRECT, see
// tiers/segment_files.h) and a RocksDB index in `dir`/index (tiers/ssd_index.h). Blocks are
// appended to the one open segment, each record padded to 4 KiB; when it is full the next free
// segment opens; when none is free the oldest segment (FIFO) is reclaimed whole: its blocks that
// were read at least reinsert_min_hits times since written are read back, verified and appended
// again (up to reinsert_max_fraction of a segment), the rest are dropped. The device therefore
// only ever sees large sequential writes and no in-place updates.
//
// I/O: through an IoEngine (tiers/io_engine.h). io_backend kUring requires io_uring (Open fails
// with UNAVAILABLE otherwise); kThreads uses the pread/pwrite pool; kAuto (default) tries
// io_uring and, when it cannot be set up, logs a warning saying why and falls back to the pool —
// the tier keeps working, slower. io_backend() says which one runs. Memory in `io_memory` (the
// DRAM arena, the demotion staging area) is registered with the ring as fixed buffers.
//
// Buffers: a buffer whose address is 4 KiB aligned and that holds PaddedSize(size) bytes is used
// for I/O directly (zero copy); any other buffer goes through an aligned bounce buffer.
//
// Durability and recovery: Write() returns OK for a block only after its bytes were written
// (O_DIRECT, completed) and its index record was written to RocksDB's WAL in one batch with the
// others of the call. At Open the in-memory index is rebuilt from RocksDB, so after a restart —
// also after kill -9 during writes — every block whose Write returned OK is served again, and a
// block whose write did not finish was never indexed. With `sync` the segment files are
// fdatasync'ed and the WAL fsynced before Write returns (power loss too); without it the
// guarantee covers process death, and the checksum below still catches anything torn.
// Reclaiming a segment deletes its index records (durably, in one batch) before any byte of it
// is overwritten. docs/OPERATIONS.md ("What durable means") says the same for operators.
//
// Index write errors (issue 17): while RocksDB refuses writes (ENOSPC, an I/O error; see
// tiers/ssd_index.h) blocks are not indexed (Write answers RESOURCE_EXHAUSTED or UNAVAILABLE per
// item), reads go on, and the index recovers by itself on a later write once the cause is gone
// (Resume, else reopen). Remove() and the drop of a block that failed its checksum never fail for
// it: the block leaves the in-memory index at once and its deletion is kept pending and written
// with the next batch that gets through (before any reclaim can overwrite its bytes). A crash
// before that brings the block back (the same bytes, verified when read).
//
// A corrupt index (issue 17): when RocksDB reports corruption at Open (a damaged MANIFEST or SST),
// the index is moved aside (`dir`/index.corrupt), an error is logged and the tier starts EMPTY
// (every segment free): the cache comes back and Counters().index_quarantined says what happened;
// the blocks it held are lost (the segments carry no keys to rebuild from).
//
// Integrity: every read is verified against the block's XXH3-64. A mismatch drops the block
// (index and RocksDB), counts checksum_failures and answers DATA_LOSS — the caller reports a miss.
// Write() trusts the checksum it is given (the DRAM tier verified it at commit).
//
// Space: segment files are fully preallocated at Open (RESOURCE_EXHAUSTED there when the file
// system is too small). A write the device refuses with ENOSPC answers RESOURCE_EXHAUSTED for
// that block and leaves it unindexed; the log itself never runs out — it reclaims.
//
// Owners and quotas (docs/SECURITY.md "Quotas"): every block is charged to the owner its write
// names (tiers/owner_quotas.h); the owner is kept in the block's index record, so each owner's use
// is rebuilt at Open. An owner's label (the tenant name) is kept in the index too (LabelOwner),
// written before any block of that owner, so after a crash every recovered block's owner still
// has its label. With `quotas`, an owner with a quota is held to it:
//  * a Write that would take an owner past its quota first drops that owner's own oldest blocks
//    (lowest generation first; their records are deleted with the write's batch); a block larger
//    than the quota itself is refused RESOURCE_EXHAUSTED. Both are counted (OwnerUsages()).
//  * an owner at or under its quota is protected: when the log reclaims a segment, that owner's
//    blocks in it are carried into the reclaimed segment (like hot blocks, but whatever their hits
//    and beyond reinsert_max_fraction), so another owner's writes never drop them. The cost is
//    write amplification for protected owners; quotas summing to more than the log can carry make
//    writes fail RESOURCE_EXHAUSTED ("cannot make room") rather than drop a protected block.
// Without a sync'ed index, blocks an owner's quota dropped may come back after a crash (their
// deletion was not yet durable): the owner is then over its quota until its next write.
//
// Thread-safety: every method may be called from any thread. Writers (Write, Remove, reclaim)
// are serialised by one writer mutex held across their I/O; readers take only the index mutex,
// briefly, and run their I/O concurrently with writers and each other. A read that overlaps the
// reclaim of its segment is detected (segment epoch) and answers NOT_FOUND, never stale bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "kvstash/block_key.h"
#include "kvstash/result.h"
#include "tiers/io_engine.h"
#include "tiers/owner_quotas.h"
#include "tiers/ssd_io_backend.h"

namespace rocksdb {
class Env;
}

namespace kvstash::tiers {

struct SsdTierOptions {
  std::string dir;                              // created when missing
  uint64_t capacity_bytes = 16ULL << 30;        // rounded down to whole segments; >= 2 segments
  uint64_t segment_bytes = 256ULL << 20;        // multiple of 4 KiB
  uint64_t max_block_bytes = 64ULL << 20;       // <= segment_bytes
  uint32_t queue_depth = 32;                    // I/Os in flight per caller
  uint32_t rings = 2;                           // io_uring rings (concurrent I/O callers)
  SsdIoBackend io_backend = SsdIoBackend::kAuto;  // tiers/ssd_io_backend.h
  bool sync = false;                            // see "Durability" above
  uint32_t reinsert_min_hits = 1;               // 0 disables reinsertion
  double reinsert_max_fraction = 0.5;           // of a segment, per reclaim
  std::vector<std::span<std::byte>> io_memory;  // registered as io_uring fixed buffers
  // Each owner's quota of this tier (see "Owners and quotas"); nullptr = every owner unlimited
  // (owners are still accounted). Not owned; must outlive the tier.
  const OwnerQuotas* quotas = nullptr;
  // Tests: builds the engine instead of io_backend (to inject I/O faults).
  std::function<Result<std::unique_ptr<IoEngine>>(const IoEngineOptions&)> engine_factory;
  // Tests: the environment RocksDB's index does its file I/O through (fault injection).
  rocksdb::Env* index_env = nullptr;
  uint64_t index_recovery_interval_ms = 100;  // least time between attempts to recover the index
};

struct SsdBlockInfo {
  BlockKey key;
  uint64_t size = 0;
  uint64_t checksum = 0;
  std::optional<BlockKey> parent;
  uint64_t generation = 0;  // unique per write on this tier
  uint32_t segment = 0;
  uint64_t offset = 0;
  uint64_t hits = 0;        // reads since written (or since the restart)
  uint64_t created_unix_ms = 0;  // wall-clock ms when the block was first stored (0: unknown)
  OwnerId owner = kNoOwner;      // who it is charged to
};

struct SsdWrite {
  BlockKey key;
  std::optional<BlockKey> parent;
  std::span<const std::byte> buffer;  // the block is buffer[0, size); may be longer (see Buffers)
  uint64_t size = 0;
  uint64_t checksum = 0;              // XXH3-64 of the block
  uint64_t created_unix_ms = 0;       // when the block was first stored (wall clock); 0 = now
  OwnerId owner = kNoOwner;           // who the block is charged to (see "Owners and quotas")
};

struct SsdRead {
  BlockKey key;
  std::span<std::byte> buffer;        // receives the block at [0, size); see Buffers
};

struct SsdUsage {
  uint64_t capacity_bytes = 0;
  uint64_t live_bytes = 0;            // padded bytes of indexed blocks
  uint64_t blocks = 0;
  uint64_t segments = 0;
  uint64_t free_segments = 0;
};

struct SsdCounters {
  uint64_t writes = 0;                // blocks written and indexed (reinsertions included)
  uint64_t write_bytes = 0;
  uint64_t write_errors = 0;          // blocks whose write or index record failed
  uint64_t no_space_errors = 0;       // of those, refused with ENOSPC
  uint64_t reads = 0;                 // blocks read and verified
  uint64_t read_bytes = 0;
  uint64_t read_errors = 0;           // I/O errors on read
  uint64_t checksum_failures = 0;     // blocks dropped for bytes that did not verify
  uint64_t reads_raced_reclaim = 0;   // reads that overlapped their segment's reclaim
  uint64_t segments_reclaimed = 0;
  uint64_t blocks_reclaimed = 0;      // dropped by reclaim
  uint64_t blocks_reinserted = 0;     // kept by reclaim (hot, or an owner's protected share)
  uint64_t blocks_kept_for_owners = 0;  // of those, kept because their owner was within its quota
  uint64_t blocks_recovered = 0;      // indexed at Open
  uint64_t records_discarded = 0;     // index records at Open that were invalid
  // The RocksDB index (tiers/ssd_index.h): refused writes, recoveries, whether writes work now,
  // deletions waiting for it, and whether Open found it corrupt and started empty.
  uint64_t index_errors = 0;
  uint64_t index_recoveries = 0;
  bool index_writable = true;
  uint64_t index_pending_deletes = 0;
  bool index_quarantined = false;
};

class SsdTier {
 public:
  // INVALID_ARGUMENT for inconsistent options; FAILED_PRECONDITION when `dir` was created with a
  // different segment size or count; UNAVAILABLE when io_backend is kUring and io_uring cannot
  // be set up; RESOURCE_EXHAUSTED when the segment files do not fit; INTERNAL for other I/O or
  // RocksDB errors. A corrupt index is not an error: the tier opens empty (see "A corrupt index").
  static Result<std::unique_ptr<SsdTier>> Open(const SsdTierOptions& options);
  ~SsdTier();

  // Writes and indexes the blocks; one Status per item, in order: OK, ALREADY_EXISTS (the key is
  // stored; nothing written), INVALID_ARGUMENT (size 0, above max_block_bytes, buffer too short,
  // or a key repeated within the call), RESOURCE_EXHAUSTED (ENOSPC), INTERNAL (I/O or index
  // error). Up to queue_depth writes are in flight at once.
  std::vector<Status> Write(std::span<const SsdWrite> items);
  Status Write(const SsdWrite& item);

  // Reads and verifies blocks into their buffers, counting a hit on each. Per item: the block's
  // info; NOT_FOUND (absent, or moved by a reclaim during the read); OUT_OF_RANGE (buffer shorter
  // than the block); DATA_LOSS (checksum mismatch — the block is dropped); INTERNAL (I/O error).
  std::vector<Result<SsdBlockInfo>> Read(std::span<const SsdRead> items);
  Result<SsdBlockInfo> Read(const BlockKey& key, std::span<std::byte> buffer);

  // Index lookups; no I/O, no hit counted.
  std::optional<SsdBlockInfo> Lookup(const BlockKey& key) const;
  bool Contains(const BlockKey& key) const;
  // Blocks with key > after (all when nullopt), at most `limit`, ordered by key.
  std::vector<SsdBlockInfo> List(const std::optional<BlockKey>& after, size_t limit) const;

  // Drops a block from the index (its bytes go with its segment). NOT_FOUND when absent. While
  // the RocksDB index refuses writes the drop is kept pending (see "Index write errors").
  Status Remove(const BlockKey& key);

  // Records `label` as the name of `owner` (durably as blocks are: in the index's WAL, before any
  // block written after it). INVALID_ARGUMENT for kNoOwner or a label outside 1..255 bytes; the
  // index's error while it refuses writes. Relabelling an owner replaces its label.
  Status LabelOwner(OwnerId owner, const std::string& label);
  // Every labelled owner (recovered at Open, or labelled since), by owner.
  std::vector<std::pair<OwnerId, std::string>> OwnerLabels() const;
  // What each owner other than kNoOwner holds here and its counters, by owner. `bytes` are padded
  // bytes on disk; `evictions` counts blocks dropped for its quota or by a reclaim.
  std::vector<OwnerUsage> OwnerUsages() const;

  SsdUsage Usage() const;
  SsdCounters Counters() const;
  std::string_view io_backend() const;
  bool buffers_registered() const;
  bool direct_io() const;
  const SsdTierOptions& options() const;

  // Bytes a block of `size` occupies on disk and in a zero-copy buffer.
  static uint64_t PaddedSize(uint64_t size);
  static constexpr uint64_t kAlignment = 4096;

 private:
  struct Impl;
  explicit SsdTier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::tiers
