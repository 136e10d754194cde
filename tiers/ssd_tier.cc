// SsdTier implementation (contract in tiers/ssd_tier.h).
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
#include "tiers/ssd_tier.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <unordered_set>

#include "common/checksum.h"
#include "common/logging.h"
#include "tiers/segment_files.h"
#include "tiers/ssd_index.h"

namespace kvstash::tiers {
namespace {

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

bool Aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % SsdTier::kAlignment == 0; }

uint64_t WallNowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

uint64_t SteadyNowMs() {
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

}  // namespace

struct SsdTier::Impl {
  SsdTierOptions options;
  uint64_t segment_count = 0;
  std::unique_ptr<SsdIndex> index;
  std::unique_ptr<SegmentFiles> files;
  std::unique_ptr<IoEngine> engine;

  std::mutex write_mu;
  mutable std::mutex mu;
  std::map<BlockKey, MemEntry> blocks;
  std::vector<Segment> segments;
  std::vector<uint32_t> free_segments;   // under write_mu
  std::vector<uint32_t> fifo;            // sealed segments, oldest first; under write_mu
  std::optional<uint32_t> open_segment;  // under write_mu
  uint64_t open_offset = 0;              // under write_mu
  std::vector<std::pair<uint32_t, uint64_t>> unpersisted_seqs;  // under write_mu
  uint64_t next_seq = 1;                 // under write_mu
  // Blocks gone from the in-memory index whose RocksDB records are not deleted yet (the index
  // refused the write); sent with every batch until one gets through. Under write_mu.
  std::unordered_set<BlockKey, BlockKeyHash> pending_deletes;
  std::atomic<uint64_t> pending_deletes_count{0};
  uint64_t last_write_error_log_ms = 0;  // under write_mu
  uint64_t live_bytes = 0;               // under mu

  std::atomic<uint64_t> writes{0}, write_bytes{0}, write_errors{0}, no_space_errors{0};
  std::atomic<uint64_t> reads{0}, read_bytes{0}, read_errors{0}, checksum_failures{0};
  std::atomic<uint64_t> reads_raced_reclaim{0}, segments_reclaimed{0}, blocks_reclaimed{0};
  std::atomic<uint64_t> blocks_reinserted{0}, blocks_recovered{0}, records_discarded{0};

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
    return i;
  }

  // REQUIRES: mu.
  void InsertLocked(const BlockKey& key, const SsdEntry& e, uint64_t hits) {
    blocks[key] = MemEntry{e, hits};
    Segment& s = segments[e.segment];
    s.keys.insert(key);
    s.live_bytes += PaddedSize(e.size);
    live_bytes += PaddedSize(e.size);
  }

  // REQUIRES: mu.
  void EraseLocked(std::map<BlockKey, MemEntry>::iterator it) {
    Segment& s = segments[it->second.e.segment];
    s.keys.erase(it->first);
    s.live_bytes -= PaddedSize(it->second.e.size);
    live_bytes -= PaddedSize(it->second.e.size);
    blocks.erase(it);
  }

  // Applies `m` to RocksDB together with every pending deletion (first, so a key deleted and
  // written again ends up written). REQUIRES: write_mu.
  Status ApplyLocked(SsdIndex::Mutation m) {
    if (!pending_deletes.empty()) {
      m.deletes.insert(m.deletes.begin(), pending_deletes.begin(), pending_deletes.end());
    }
    Status st = index->Apply(m);
    if (st.ok() && !pending_deletes.empty()) {
      pending_deletes.clear();
      pending_deletes_count.store(0, std::memory_order_relaxed);
    }
    return st;
  }

  // Forgets a block now; its RocksDB record goes with this or a later batch. REQUIRES: write_mu.
  void DropLocked(const BlockKey& key, std::optional<uint64_t> only_seq) {
    {
      std::lock_guard lock(mu);
      auto it = blocks.find(key);
      if (it == blocks.end() || (only_seq && it->second.e.seq != *only_seq)) return;
      EraseLocked(it);
    }
    pending_deletes.insert(key);
    pending_deletes_count.store(pending_deletes.size(), std::memory_order_relaxed);
    (void)ApplyLocked({});  // a refusal keeps it pending
  }

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
  void FlushLocked(WriteContext& ctx) {
    if (ctx.pending.empty()) return;
    const size_t n = ctx.pending.size();
    std::vector<IoOp> ops(n);
    for (size_t i = 0; i < n; ++i) {
      const Planned& p = ctx.pending[i];
      ops[i].file = p.entry.segment;
      ops[i].write = true;
      ops[i].buf = const_cast<std::byte*>(p.src);  // only read from: the op is a write
      ops[i].len = static_cast<uint32_t>(PaddedSize(p.entry.size));
      ops[i].offset = p.entry.offset;
    }
    std::vector<Status> results(n);
    std::vector<uint8_t> reported(n, 0);
    std::vector<size_t> written;  // completed, not yet indexed
    auto index_written = [&] {
      if (written.empty()) return;
      SsdIndex::Mutation m;
      for (size_t i : written) {
        if (ops[i].result != static_cast<int64_t>(ops[i].len)) {  // an error, or a transfer cut short
          results[i] = IoError("segment write failed", ops[i].result < 0 ? ops[i].result : -EIO);
        } else {
          m.puts.emplace_back(ctx.pending[i].key, ctx.pending[i].entry);
        }
      }
      m.segment_seqs = unpersisted_seqs;
      const Status applied = m.puts.empty() && m.segment_seqs.empty() ? Status::Ok() : ApplyLocked(std::move(m));
      if (applied.ok()) {
        unpersisted_seqs.clear();
        std::lock_guard lock(mu);
        for (size_t i : written) {
          if (results[i].ok()) InsertLocked(ctx.pending[i].key, ctx.pending[i].entry, 0);
        }
      } else {
        for (size_t i : written) {
          if (results[i].ok()) results[i] = applied;
        }
      }
      written.clear();
    };
    const bool stream = !options.sync;
    const size_t chunk = std::max<size_t>(8, options.queue_depth / 2);
    Status engine_status = engine->RunEach(ops, [&](size_t i) {
      reported[i] = 1;
      written.push_back(i);
      if (stream && written.size() >= chunk) index_written();
    });
    if (engine_status.ok() && options.sync) {
      std::vector<int> fds;
      for (const Planned& p : ctx.pending) {
        const int fd = files->fds()[p.entry.segment];
        if (std::find(fds.begin(), fds.end(), fd) == fds.end()) fds.push_back(fd);
      }
      engine_status = engine->Sync(fds);
    }
    if (!engine_status.ok()) {
      // Ops the engine never reported may not have been written; with `sync`, nothing is durable.
      for (size_t i = 0; i < n; ++i) {
        if (!stream || !reported[i]) results[i] = engine_status;
      }
      if (!stream) written.clear();
    }
    index_written();
    size_t failed = 0;
    const Status* first_failure = nullptr;
    for (size_t i = 0; i < n; ++i) {
      if (!results[i].ok() && failed++ == 0) first_failure = &results[i];
    }
    if (failed > 0) {
      const uint64_t now = SteadyNowMs();
      if (last_write_error_log_ms == 0 || now - last_write_error_log_ms >= 10'000) {
        last_write_error_log_ms = now;
        spdlog::warn("ssd tier: {} of {} blocks not stored: {} (see write_errors, no_space_errors; logged at most every "
                     "10 s)",
                     failed, n, first_failure->ToString());
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const Planned& p = ctx.pending[i];
      if (results[i].ok()) {
        writes.fetch_add(1, std::memory_order_relaxed);
        write_bytes.fetch_add(p.entry.size, std::memory_order_relaxed);
        if (p.item == SIZE_MAX) blocks_reinserted.fetch_add(1, std::memory_order_relaxed);
      } else {
        write_errors.fetch_add(1, std::memory_order_relaxed);
        if (results[i].code() == StatusCode::kResourceExhausted) {
          no_space_errors.fetch_add(1, std::memory_order_relaxed);
        }
      }
      if (p.item != SIZE_MAX) (*ctx.out)[p.item] = results[i];
    }
    ctx.pending.clear();
  }

  // Empties the oldest sealed segment, planning its hot blocks for re-append into `ctx`, and
  // returns it (now free). REQUIRES: write_mu, nothing pending, fifo not empty.
  Result<uint32_t> ReclaimOldestLocked(WriteContext& ctx) {
    const uint32_t victim = fifo.front();
    std::vector<std::pair<BlockKey, MemEntry>> live;
    {
      std::lock_guard lock(mu);
      for (const BlockKey& key : segments[victim].keys) live.emplace_back(key, blocks.at(key));
    }
    // Hottest first, within the budget.
    std::sort(live.begin(), live.end(), [](const auto& a, const auto& b) { return a.second.hits > b.second.hits; });
    const uint64_t budget = static_cast<uint64_t>(options.reinsert_max_fraction *
                                                  static_cast<double>(options.segment_bytes));
    std::vector<std::pair<BlockKey, MemEntry>> hot;
    uint64_t hot_bytes = 0;
    if (options.reinsert_min_hits > 0) {
      for (const auto& kv : live) {
        if (kv.second.hits < options.reinsert_min_hits) break;
        const uint64_t padded = PaddedSize(kv.second.e.size);
        if (hot_bytes + padded > budget) continue;
        hot.push_back(kv);
        hot_bytes += padded;
      }
    }
    AlignedBuffer hot_buf(hot_bytes);
    if (hot_bytes > 0 && hot_buf.data() == nullptr) hot.clear();
    std::vector<IoOp> ops(hot.size());
    uint64_t at = 0;
    for (size_t i = 0; i < hot.size(); ++i) {
      ops[i] = IoOp{victim, false, hot_buf.data() + at, static_cast<uint32_t>(PaddedSize(hot[i].second.e.size)),
                    hot[i].second.e.offset, 0};
      at += ops[i].len;
    }
    if (!engine->Run(ops).ok()) ops.clear(), hot.clear();  // reinsertion is best effort

    const uint64_t seq = next_seq++;
    SsdIndex::Mutation m;
    for (const auto& kv : live) m.deletes.push_back(kv.first);
    m.segment_seqs.emplace_back(victim, seq);
    KVSTASH_RETURN_IF_ERROR(ApplyLocked(std::move(m)));
    {
      std::lock_guard lock(mu);
      for (const auto& kv : live) {
        auto it = blocks.find(kv.first);
        if (it != blocks.end() && it->second.e.segment == victim) EraseLocked(it);
      }
      segments[victim].epoch.fetch_add(1, std::memory_order_acq_rel);
      segments[victim].seq = seq;
    }
    fifo.erase(fifo.begin());
    segments_reclaimed.fetch_add(1, std::memory_order_relaxed);

    uint64_t kept = 0;
    for (size_t i = 0; i < hot.size(); ++i) {
      const MemEntry& m_e = hot[i].second;
      if (ops[i].result != static_cast<int64_t>(ops[i].len) || BlockChecksum(ops[i].buf, m_e.e.size) != m_e.e.checksum) {
        continue;
      }
      Planned p;
      p.key = hot[i].first;
      p.entry = m_e.e;
      p.entry.segment = victim;
      p.entry.offset = kept;
      p.entry.seq = next_seq++;
      p.src = ops[i].buf;
      kept += ops[i].len;
      ctx.pending.push_back(p);
    }
    blocks_reclaimed.fetch_add(live.size() - ctx.pending.size(), std::memory_order_relaxed);
    if (!ctx.pending.empty()) ctx.buffers.push_back(std::move(hot_buf));
    open_offset = kept;
    return victim;
  }

  // Finds room for `padded` bytes in the open segment, opening (and if need be reclaiming) the
  // next one. Returns (segment, offset). REQUIRES: write_mu.
  Result<std::pair<uint32_t, uint64_t>> AllocateLocked(uint64_t padded, WriteContext& ctx) {
    // A reclaim may leave too little room after its reinserted blocks; then the next segment
    // goes too (reinserted blocks start with no hits, so this ends within a lap of the log).
    for (uint64_t round = 0; !open_segment || open_offset + padded > options.segment_bytes; ++round) {
      if (round > segment_count) {
        return ResourceExhausted("ssd log cannot make room for a " + std::to_string(padded) + "-byte block");
      }
      if (open_segment) fifo.push_back(*open_segment);
      open_segment.reset();
      if (!free_segments.empty()) {
        const uint32_t s = free_segments.back();
        free_segments.pop_back();
        const uint64_t seq = next_seq++;
        {
          std::lock_guard lock(mu);
          segments[s].seq = seq;
          segments[s].used = true;
        }
        unpersisted_seqs.emplace_back(s, seq);
        open_segment = s;
        open_offset = 0;
      } else {
        FlushLocked(ctx);
        KVSTASH_ASSIGN_OR_RETURN(uint32_t s, ReclaimOldestLocked(ctx));
        open_segment = s;  // open_offset is past the reinserted blocks
      }
    }
    const std::pair<uint32_t, uint64_t> at{*open_segment, open_offset};
    open_offset += padded;
    return at;
  }

  // Rebuilds the in-memory state from the index. Called once, from Open.
  Status Recover() {
    std::vector<BlockKey> invalid;
    std::vector<std::pair<BlockKey, SsdEntry>> loaded;
    uint64_t undecodable = 0;
    Status load = index->Load(
        [&](const BlockKey& key, const SsdEntry& e) {
          const bool ok = e.segment < segment_count && e.size > 0 && e.size <= options.max_block_bytes &&
                          e.offset % kAlignment == 0 && e.offset + PaddedSize(e.size) <= options.segment_bytes;
          if (ok) {
            loaded.emplace_back(key, e);
          } else {
            invalid.push_back(key);
          }
        },
        [&](uint32_t segment, uint64_t seq) {
          if (segment < segment_count) {
            segments[segment].seq = seq;
            segments[segment].used = true;
          }
        },
        &undecodable);
    if (load.code() == StatusCode::kDataLoss) {
      // Corrupt SST or similar, found only when read: the index is moved aside; start empty.
      KVSTASH_RETURN_IF_ERROR(QuarantineIndex(load.message()));
      invalid.clear();
      loaded.clear();
      undecodable = 0;
      for (Segment& s : segments) {
        s.seq = 0;
        s.used = false;
      }
    } else {
      KVSTASH_RETURN_IF_ERROR(load);
    }
    uint64_t max_seq = 0;
    {
      std::lock_guard lock(mu);
      for (const auto& [key, e] : loaded) {
        InsertLocked(key, e, 0);
        segments[e.segment].used = true;
        max_seq = std::max(max_seq, e.seq);
      }
    }
    if (!invalid.empty()) {
      SsdIndex::Mutation m;
      m.deletes = invalid;
      KVSTASH_RETURN_IF_ERROR(ApplyLocked(std::move(m)));
    }
    records_discarded.store(invalid.size() + undecodable, std::memory_order_relaxed);
    blocks_recovered.store(loaded.size(), std::memory_order_relaxed);

    std::vector<uint32_t> used;
    for (uint32_t s = 0; s < segment_count; ++s) {
      if (segments[s].used) {
        used.push_back(s);
        max_seq = std::max(max_seq, segments[s].seq);
      } else {
        free_segments.push_back(s);
      }
    }
    std::reverse(free_segments.begin(), free_segments.end());  // lowest id first from back()
    std::sort(used.begin(), used.end(), [&](uint32_t a, uint32_t b) { return segments[a].seq < segments[b].seq; });
    if (!used.empty()) {
      // The newest segment stays open; appends resume after its last indexed block. Anything
      // beyond that was never indexed and may be overwritten.
      open_segment = used.back();
      used.pop_back();
      uint64_t end = 0;
      for (const auto& [key, e] : loaded) {
        if (e.segment == *open_segment) end = std::max(end, e.offset + PaddedSize(e.size));
      }
      open_offset = end;
    }
    fifo = std::move(used);
    next_seq = max_seq + 1;
    if (index->Health().quarantined) {
      spdlog::error("ssd tier: started EMPTY in {}: its index was corrupt ({}); the blocks its {} segments ({} bytes) "
                    "held are lost and the cache refills",
                    options.dir, index->Health().quarantine_reason, segment_count, segment_count * options.segment_bytes);
    }
    return Status::Ok();
  }

  // Moves a corrupt index aside, starts an empty one and writes the layout into it.
  Status QuarantineIndex(const std::string& reason) {
    KVSTASH_RETURN_IF_ERROR(index->Quarantine(reason));
    return index->WriteLayout({options.segment_bytes, segment_count});
  }
};

uint64_t SsdTier::PaddedSize(uint64_t size) { return (size + kAlignment - 1) / kAlignment * kAlignment; }

SsdTier::SsdTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SsdTier::~SsdTier() = default;

Result<std::unique_ptr<SsdTier>> SsdTier::Open(const SsdTierOptions& options) {
  const SsdTierOptions& o = options;
  if (o.dir.empty()) return InvalidArgument("ssd dir must be set");
  if (o.segment_bytes == 0 || o.segment_bytes % kAlignment != 0) {
    return InvalidArgument("segment_bytes must be a positive multiple of 4096, got " + std::to_string(o.segment_bytes));
  }
  if (o.max_block_bytes == 0 || o.max_block_bytes > o.segment_bytes || o.max_block_bytes > (1ULL << 31)) {
    return InvalidArgument("max_block_bytes must be in [1, min(segment_bytes, 2 GiB)], got " +
                           std::to_string(o.max_block_bytes));
  }
  const uint64_t count = o.capacity_bytes / o.segment_bytes;
  if (count < 2 || count > (1ULL << 20)) {
    return InvalidArgument("ssd capacity must hold 2 .. 2^20 segments of " + std::to_string(o.segment_bytes) +
                           " bytes, got capacity " + std::to_string(o.capacity_bytes));
  }
  if (o.queue_depth == 0 || o.queue_depth > 4096) return InvalidArgument("queue_depth must be in [1, 4096]");
  if (!(o.reinsert_max_fraction >= 0.0 && o.reinsert_max_fraction <= 1.0)) {
    return InvalidArgument("reinsert_max_fraction must be in [0, 1]");
  }
  if (o.io_backend != "auto" && o.io_backend != "uring" && o.io_backend != "threads") {
    return InvalidArgument("io_backend must be auto, uring or threads, got '" + o.io_backend + "'");
  }
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  if (ec) return Internal("cannot create ssd dir " + o.dir + ": " + ec.message());

  auto impl = std::make_unique<Impl>(count);
  impl->options = o;
  impl->segment_count = count;
  SsdIndexOptions index_options;
  index_options.sync = o.sync;
  index_options.env = o.index_env;
  index_options.recovery_interval_ms = o.index_recovery_interval_ms;
  KVSTASH_ASSIGN_OR_RETURN(impl->index, SsdIndex::Open(o.dir + "/index", index_options));
  Result<std::optional<SsdLayout>> read_layout = impl->index->ReadLayout();
  if (!read_layout.ok() && read_layout.status().code() == StatusCode::kDataLoss) {
    KVSTASH_RETURN_IF_ERROR(impl->index->Quarantine(read_layout.status().message()));
    read_layout = impl->index->ReadLayout();
  }
  KVSTASH_ASSIGN_OR_RETURN(std::optional<SsdLayout> layout, std::move(read_layout));
  if (layout && (layout->segment_bytes != o.segment_bytes || layout->segment_count != count)) {
    return FailedPrecondition("ssd dir " + o.dir + " holds " + std::to_string(layout->segment_count) +
                              " segments of " + std::to_string(layout->segment_bytes) +
                              " bytes; configured " + std::to_string(count) + " of " +
                              std::to_string(o.segment_bytes) + " (empty the dir to change the layout)");
  }
  KVSTASH_ASSIGN_OR_RETURN(impl->files, SegmentFiles::Open(o.dir, o.segment_bytes, static_cast<uint32_t>(count)));
  if (!layout) KVSTASH_RETURN_IF_ERROR(impl->index->WriteLayout({o.segment_bytes, count}));
  if (!impl->files->direct_io()) {
    spdlog::warn("ssd tier: {} does not support O_DIRECT; segment I/O goes through the page cache", o.dir);
  }

  IoEngineOptions eo;
  eo.fds = impl->files->fds();
  eo.memory = o.io_memory;
  eo.queue_depth = o.queue_depth;
  eo.rings = o.rings;
  if (o.engine_factory) {
    KVSTASH_ASSIGN_OR_RETURN(impl->engine, o.engine_factory(eo));
  } else if (o.io_backend == "threads") {
    KVSTASH_ASSIGN_OR_RETURN(impl->engine, MakeThreadPoolEngine(eo));
  } else {
    Result<std::unique_ptr<IoEngine>> uring = MakeUringEngine(eo);
    if (uring.ok()) {
      impl->engine = std::move(uring).value();
    } else if (o.io_backend == "uring") {
      return uring.status();
    } else {
      spdlog::warn("ssd tier: io_uring is not available ({}); falling back to a pread/pwrite pool of {} threads",
                   uring.status().message(), o.queue_depth);
      KVSTASH_ASSIGN_OR_RETURN(impl->engine, MakeThreadPoolEngine(eo));
    }
  }
  KVSTASH_RETURN_IF_ERROR(impl->Recover());
  return std::unique_ptr<SsdTier>(new SsdTier(std::move(impl)));
}

std::vector<Status> SsdTier::Write(std::span<const SsdWrite> items) {
  Impl& d = *impl_;
  std::vector<Status> out(items.size());
  WriteContext ctx;
  ctx.out = &out;
  std::unordered_set<BlockKey, BlockKeyHash> seen;
  std::lock_guard write(d.write_mu);
  for (size_t i = 0; i < items.size(); ++i) {
    const SsdWrite& w = items[i];
    if (w.size == 0 || w.size > d.options.max_block_bytes || w.buffer.size() < w.size) {
      out[i] = InvalidArgument("block " + w.key.ToHex() + ": size " + std::to_string(w.size) + " outside [1, " +
                               std::to_string(d.options.max_block_bytes) + "] or longer than its buffer");
      continue;
    }
    if (!seen.insert(w.key).second) {
      out[i] = InvalidArgument("block " + w.key.ToHex() + " appears twice in one write");
      continue;
    }
    if (Contains(w.key)) {
      out[i] = AlreadyExists("block " + w.key.ToHex() + " is already on ssd");
      continue;
    }
    const uint64_t padded = PaddedSize(w.size);
    const std::byte* src = w.buffer.data();
    if (!Aligned(src) || w.buffer.size() < padded) {
      AlignedBuffer bounce(padded);
      if (bounce.data() == nullptr) {
        out[i] = ResourceExhausted("no memory for a " + std::to_string(padded) + "-byte bounce buffer");
        continue;
      }
      std::memcpy(bounce.data(), src, w.size);
      std::memset(bounce.data() + w.size, 0, padded - w.size);
      src = bounce.data();
      ctx.buffers.push_back(std::move(bounce));
    }
    Result<std::pair<uint32_t, uint64_t>> at = d.AllocateLocked(padded, ctx);
    if (!at.ok()) {
      out[i] = at.status();
      continue;
    }
    Planned p;
    p.key = w.key;
    p.entry.segment = at->first;
    p.entry.offset = at->second;
    p.entry.size = w.size;
    p.entry.checksum = w.checksum;
    p.entry.seq = d.next_seq++;
    p.entry.parent = w.parent;
    p.entry.created_unix_ms = w.created_unix_ms != 0 ? w.created_unix_ms : WallNowMs();
    p.src = src;
    p.item = i;
    ctx.pending.push_back(p);
  }
  d.FlushLocked(ctx);
  return out;
}

Status SsdTier::Write(const SsdWrite& item) { return Write(std::span<const SsdWrite>(&item, 1))[0]; }

std::vector<Result<SsdBlockInfo>> SsdTier::Read(std::span<const SsdRead> items) {
  Impl& d = *impl_;
  std::vector<Result<SsdBlockInfo>> out(items.size(), Result<SsdBlockInfo>(NotFound("not read")));
  struct Job {
    size_t item;
    MemEntry entry;
    uint64_t epoch;
    AlignedBuffer bounce;
  };
  std::vector<size_t> pending_items(items.size());
  for (size_t i = 0; i < items.size(); ++i) pending_items[i] = i;
  // A read that raced a reclaim is looked up once more: the block may have been reinserted.
  for (int attempt = 0; attempt < 2 && !pending_items.empty(); ++attempt) {
    std::vector<Job> jobs;
    {
      std::lock_guard lock(d.mu);
      for (size_t i : pending_items) {
        auto it = d.blocks.find(items[i].key);
        if (it == d.blocks.end()) {
          out[i] = NotFound("block " + items[i].key.ToHex() + " is not on ssd");
          continue;
        }
        if (items[i].buffer.size() < it->second.e.size) {
          out[i] = OutOfRange("buffer of " + std::to_string(items[i].buffer.size()) + " bytes is smaller than block " +
                              items[i].key.ToHex() + " (" + std::to_string(it->second.e.size) + " bytes)");
          continue;
        }
        ++it->second.hits;
        jobs.push_back({i, it->second, d.segments[it->second.e.segment].epoch.load(std::memory_order_acquire), {}});
      }
    }
    pending_items.clear();
    std::vector<IoOp> ops(jobs.size());
    for (size_t j = 0; j < jobs.size(); ++j) {
      Job& job = jobs[j];
      const uint64_t padded = PaddedSize(job.entry.e.size);
      std::byte* dst = items[job.item].buffer.data();
      if (!Aligned(dst) || items[job.item].buffer.size() < padded) {
        job.bounce = AlignedBuffer(padded);
        dst = job.bounce.data();
      }
      ops[j] = IoOp{job.entry.e.segment, false, dst, static_cast<uint32_t>(padded), job.entry.e.offset, 0};
      if (dst == nullptr) ops[j].result = -ENOMEM;
    }
    std::vector<IoOp> runnable;
    std::vector<size_t> runnable_of;
    for (size_t j = 0; j < ops.size(); ++j) {
      if (ops[j].buf != nullptr) {
        runnable.push_back(ops[j]);
        runnable_of.push_back(j);
      }
    }
    // Each block is verified as soon as its read completes, while the engine keeps the rest of
    // the batch in flight. The callback takes no lock (the engine's ring is held): a checksum
    // failure is only recorded here and the block dropped after the batch.
    enum class Outcome : uint8_t { kPending, kOk, kIoError, kRaced, kBadChecksum };
    std::vector<Outcome> outcome(jobs.size(), Outcome::kPending);
    auto verify = [&](size_t j) {
      Job& job = jobs[j];
      if (ops[j].result != static_cast<int64_t>(ops[j].len)) {  // an error, or a transfer cut short
        if (ops[j].result >= 0) ops[j].result = -EIO;
        outcome[j] = Outcome::kIoError;
        return;
      }
      if (d.segments[job.entry.e.segment].epoch.load(std::memory_order_acquire) != job.epoch) {
        outcome[j] = Outcome::kRaced;
        return;
      }
      if (BlockChecksum(ops[j].buf, job.entry.e.size) != job.entry.e.checksum) {
        outcome[j] = Outcome::kBadChecksum;
        return;
      }
      if (job.bounce.data() != nullptr) std::memcpy(items[job.item].buffer.data(), job.bounce.data(), job.entry.e.size);
      outcome[j] = Outcome::kOk;
    };
    for (size_t j = 0; j < ops.size(); ++j) {
      if (ops[j].buf == nullptr) verify(j);  // no buffer: fails without I/O
    }
    const Status engine_status = d.engine->RunEach(runnable, [&](size_t r) {
      ops[runnable_of[r]].result = runnable[r].result;
      verify(runnable_of[r]);
    });

    for (size_t j = 0; j < jobs.size(); ++j) {
      Job& job = jobs[j];
      const SsdRead& item = items[job.item];
      switch (outcome[j]) {
        case Outcome::kPending:  // the engine failed before reporting this op
          out[job.item] = engine_status.ok() ? Internal("ssd read was never completed") : engine_status;
          d.read_errors.fetch_add(1, std::memory_order_relaxed);
          break;
        case Outcome::kIoError:
          out[job.item] = Impl::IoError("segment read failed", ops[j].result);
          d.read_errors.fetch_add(1, std::memory_order_relaxed);
          break;
        case Outcome::kRaced:
          d.reads_raced_reclaim.fetch_add(1, std::memory_order_relaxed);
          out[job.item] = NotFound("block " + item.key.ToHex() + " moved during the read");
          pending_items.push_back(job.item);
          break;
        case Outcome::kBadChecksum: {
          d.checksum_failures.fetch_add(1, std::memory_order_relaxed);
          spdlog::warn("ssd tier: block {} in segment {} at {} fails its checksum; dropped", item.key.ToHex(),
                       job.entry.e.segment, job.entry.e.offset);
          std::lock_guard write(d.write_mu);
          d.DropLocked(item.key, job.entry.e.seq);
          out[job.item] = DataLoss("block " + item.key.ToHex() + " failed its checksum on ssd and was dropped");
          break;
        }
        case Outcome::kOk:
          d.reads.fetch_add(1, std::memory_order_relaxed);
          d.read_bytes.fetch_add(job.entry.e.size, std::memory_order_relaxed);
          job.entry.hits += 1;
          out[job.item] = Impl::InfoOf(item.key, job.entry);
          break;
      }
    }
  }
  return out;
}

Result<SsdBlockInfo> SsdTier::Read(const BlockKey& key, std::span<std::byte> buffer) {
  SsdRead item{key, buffer};
  return std::move(Read(std::span<const SsdRead>(&item, 1))[0]);
}

std::optional<SsdBlockInfo> SsdTier::Lookup(const BlockKey& key) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->blocks.find(key);
  if (it == impl_->blocks.end()) return std::nullopt;
  return Impl::InfoOf(key, it->second);
}

bool SsdTier::Contains(const BlockKey& key) const {
  std::lock_guard lock(impl_->mu);
  return impl_->blocks.contains(key);
}

std::vector<SsdBlockInfo> SsdTier::List(const std::optional<BlockKey>& after, size_t limit) const {
  std::vector<SsdBlockInfo> out;
  std::lock_guard lock(impl_->mu);
  auto it = after ? impl_->blocks.upper_bound(*after) : impl_->blocks.begin();
  for (; it != impl_->blocks.end() && out.size() < limit; ++it) out.push_back(Impl::InfoOf(it->first, it->second));
  return out;
}

Status SsdTier::Remove(const BlockKey& key) {
  Impl& d = *impl_;
  if (!Contains(key)) return NotFound("block " + key.ToHex() + " is not on ssd");  // no writer wait
  std::lock_guard write(d.write_mu);
  if (!Contains(key)) return NotFound("block " + key.ToHex() + " is not on ssd");
  d.DropLocked(key, std::nullopt);
  return Status::Ok();
}

SsdUsage SsdTier::Usage() const {
  const Impl& d = *impl_;
  SsdUsage u;
  u.capacity_bytes = d.segment_count * d.options.segment_bytes;
  u.segments = d.segment_count;
  std::lock_guard lock(d.mu);
  u.live_bytes = d.live_bytes;
  u.blocks = d.blocks.size();
  for (const Segment& s : d.segments) u.free_segments += s.used ? 0 : 1;
  return u;
}

SsdCounters SsdTier::Counters() const {
  const Impl& d = *impl_;
  SsdCounters c;
  c.writes = d.writes.load(std::memory_order_relaxed);
  c.write_bytes = d.write_bytes.load(std::memory_order_relaxed);
  c.write_errors = d.write_errors.load(std::memory_order_relaxed);
  c.no_space_errors = d.no_space_errors.load(std::memory_order_relaxed);
  c.reads = d.reads.load(std::memory_order_relaxed);
  c.read_bytes = d.read_bytes.load(std::memory_order_relaxed);
  c.read_errors = d.read_errors.load(std::memory_order_relaxed);
  c.checksum_failures = d.checksum_failures.load(std::memory_order_relaxed);
  c.reads_raced_reclaim = d.reads_raced_reclaim.load(std::memory_order_relaxed);
  c.segments_reclaimed = d.segments_reclaimed.load(std::memory_order_relaxed);
  c.blocks_reclaimed = d.blocks_reclaimed.load(std::memory_order_relaxed);
  c.blocks_reinserted = d.blocks_reinserted.load(std::memory_order_relaxed);
  c.blocks_recovered = d.blocks_recovered.load(std::memory_order_relaxed);
  c.records_discarded = d.records_discarded.load(std::memory_order_relaxed);
  const SsdIndexHealth h = d.index->Health();
  c.index_errors = h.errors;
  c.index_recoveries = h.recoveries;
  c.index_writable = h.writable;
  c.index_quarantined = h.quarantined;
  c.index_pending_deletes = d.pending_deletes_count.load(std::memory_order_relaxed);
  return c;
}

std::string_view SsdTier::io_backend() const { return impl_->engine->name(); }
bool SsdTier::buffers_registered() const { return impl_->engine->buffers_registered(); }
bool SsdTier::direct_io() const { return impl_->files->direct_io(); }
const SsdTierOptions& SsdTier::options() const { return impl_->options; }

}  // namespace kvstash::tiers
