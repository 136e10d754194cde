// SsdIndex: the durable half of the SSD tier's index, in RocksDB (DESIGN.md §3: "index: in-memory
// + RocksDB (ssd)"). SsdTier keeps the authoritative in-memory copy; this class persists it and
// rebuilds it at open. RocksDB's Status never leaves this file: every call answers a kvstash Status.
//
// Records (keys are byte strings):
//   "L"                      -> layout: segment_bytes, segment_count (u64 LE each)
//   "b" + 16-byte block key  -> SsdEntry (fixed little-endian encoding, below)
//   "s" + u32 BE segment id  -> u64 LE sequence number of the segment's current fill (FIFO order)
//   "o" + u32 BE owner id    -> the owner's label (a tenant name; tiers/owner_quotas.h), 1..255 bytes
//
// Durability: Apply() writes one rocksdb::WriteBatch through the WAL, so a batch is all-or-nothing
// across kill -9. With `sync` the WAL is fsynced before Apply returns (survives power loss too);
// without it the batch is in the OS page cache when Apply returns (survives process death).
//
// Write errors (issue 17): a write RocksDB refuses (ENOSPC, an I/O error) leaves the database in
// a background-error state in which it refuses every later write, even once the cause is gone.
// Apply() notices, logs the error once, counts it (Health().errors) and answers
// RESOURCE_EXHAUSTED (no space) or UNAVAILABLE; each later Apply (at most every
// recovery_interval_ms) first tries to recover: DB::Resume(), and when that fails, closing and
// reopening the database (its WAL replays what was acknowledged). A recovery is logged and counted
// (Health().recoveries). Reads of the in-memory copy never depend on this (SsdTier keeps it).
//
// Corruption (issue 17): a database RocksDB cannot open or read because a file is corrupt (a flipped
// byte in the MANIFEST or an SST) is not fatal: Open() moves the directory aside to `path` +
// ".corrupt" (replacing an older one), logs an error saying so, creates an empty database and
// reports it in Health().quarantined / quarantine_reason; the caller (SsdTier) then treats every
// segment as free. Damage RocksDB tolerates by itself (a torn WAL tail) is not corruption here.
// A database held by another process is still an error (INTERNAL), never moved aside.
//
// Thread-safety: every method may be called from any thread (one mutex serialises them).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/block_key.h"
#include "kvstash/result.h"
#include "tiers/owner_quotas.h"

namespace rocksdb {
class Env;
}

namespace kvstash::tiers {

// Where one block's bytes live and what they must hash to.
struct SsdEntry {
  uint32_t segment = 0;
  uint64_t offset = 0;    // within the segment file, 4 KiB aligned
  uint64_t size = 0;      // block bytes; on disk the record occupies PaddedSize(size)
  uint64_t checksum = 0;  // XXH3-64 of the `size` bytes
  uint64_t seq = 0;       // unique per write on this tier (the block's generation)
  std::optional<BlockKey> parent;
  uint32_t flags = 0;     // reserved for future use; written as given
  uint64_t created_unix_ms = 0;  // wall-clock time the block was first stored; 0 = unknown
  OwnerId owner = kNoOwner;      // who the block is charged to (its label: an "o" record)
};

struct SsdIndexOptions {
  bool sync = false;                   // fsync the WAL on every Apply
  uint64_t recovery_interval_ms = 100; // least time between two recovery attempts
  // Tests: the environment RocksDB does its file I/O through (fault injection); nullptr = default.
  rocksdb::Env* env = nullptr;
};

struct SsdIndexHealth {
  bool writable = true;           // false from a refused write until a recovery succeeds
  uint64_t errors = 0;            // writes refused (each Apply that failed)
  uint64_t recoveries = 0;        // times writes were made possible again (Resume or reopen)
  bool quarantined = false;       // Open found the database corrupt and started an empty one
  std::string last_error;         // RocksDB's message of the latest refused write or open
  std::string quarantine_reason;  // RocksDB's message that made Open move the database aside
};

struct SsdLayout {
  uint64_t segment_bytes = 0;
  uint64_t segment_count = 0;
};

class SsdIndex {
 public:
  struct Mutation {
    std::vector<std::pair<BlockKey, SsdEntry>> puts;
    std::vector<BlockKey> deletes;
    std::vector<std::pair<uint32_t, uint64_t>> segment_seqs;  // (segment, seq)
    std::vector<std::pair<OwnerId, std::string>> owner_labels;  // (owner, label)
  };

  // Opens (creating when missing) the database in `path`. A corrupt database is moved aside and
  // an empty one opened (see "Corruption"). INTERNAL with RocksDB's message when it cannot be
  // opened otherwise (another process holds it, an I/O error).
  static Result<std::unique_ptr<SsdIndex>> Open(const std::string& path, const SsdIndexOptions& options);
  static Result<std::unique_ptr<SsdIndex>> Open(const std::string& path, bool sync) {
    SsdIndexOptions o;
    o.sync = sync;
    return Open(path, o);
  }
  ~SsdIndex();

  // The stored layout, or nullopt for a new database.
  Result<std::optional<SsdLayout>> ReadLayout() const;
  Status WriteLayout(const SsdLayout& layout);

  // Calls `block` for every stored block, `segment` for every stored segment sequence and `owner`
  // for every owner label. Records that do not decode are skipped and counted in *undecodable.
  // DATA_LOSS when RocksDB reports corruption while reading (the caller may Quarantine()).
  Status Load(const std::function<void(const BlockKey&, const SsdEntry&)>& block,
              const std::function<void(uint32_t, uint64_t)>& segment,
              const std::function<void(OwnerId, std::string_view)>& owner, uint64_t* undecodable) const;

  // Applies all of `m` atomically. RESOURCE_EXHAUSTED (no space) or UNAVAILABLE while RocksDB
  // refuses writes (see "Write errors"); INTERNAL for other errors.
  Status Apply(const Mutation& m);

  // Moves the database aside (as Open does for corruption found there) and starts an empty one.
  Status Quarantine(const std::string& reason);

  SsdIndexHealth Health() const;

 private:
  struct Impl;
  explicit SsdIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::tiers
