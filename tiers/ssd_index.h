// SsdIndex: the durable half of the SSD tier's index, in RocksDB (DESIGN.md §3: "index: in-memory
// + RocksDB (ssd)"). SsdTier keeps the authoritative in-memory copy; this class persists it and
// rebuilds it at open. RocksDB's Status never leaves this file: every call answers a kvstash Status.
//
// Records (keys are byte strings):
//   "L"                      -> layout: segment_bytes, segment_count (u64 LE each)
//   "b" + 16-byte block key  -> SsdEntry (fixed little-endian encoding, below)
//   "s" + u32 BE segment id  -> u64 LE sequence number of the segment's current fill (FIFO order)
//
// Durability: Apply() writes one rocksdb::WriteBatch through the WAL, so a batch is all-or-nothing
// across kill -9. With `sync` the WAL is fsynced before Apply returns (survives power loss too);
// without it the batch is in the OS page cache when Apply returns (survives process death).
//
// Thread-safety: every method may be called from any thread (RocksDB serialises writers).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/block_key.h"
#include "kvstash/result.h"

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
  };

  // Opens (creating when missing) the database in `path`. INTERNAL with RocksDB's message when
  // it cannot be opened (another process holds it, corrupt files).
  static Result<std::unique_ptr<SsdIndex>> Open(const std::string& path, bool sync);
  ~SsdIndex();

  // The stored layout, or nullopt for a new database.
  Result<std::optional<SsdLayout>> ReadLayout() const;
  Status WriteLayout(const SsdLayout& layout);

  // Calls `block` for every stored block and `segment` for every stored segment sequence.
  // Records that do not decode are skipped and counted in *undecodable.
  Status Load(const std::function<void(const BlockKey&, const SsdEntry&)>& block,
              const std::function<void(uint32_t, uint64_t)>& segment, uint64_t* undecodable) const;

  // Applies all of `m` atomically.
  Status Apply(const Mutation& m);

 private:
  struct Impl;
  explicit SsdIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::tiers
