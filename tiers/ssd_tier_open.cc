// SsdTier::Open and the recovery of its in-memory state from the index (internals in
// tiers/ssd_tier_impl.h).
#include "tiers/ssd_tier_impl.h"
#include "tiers/ssd_records.h"

namespace kvstash::tiers {

using namespace ssd_detail;  // NOLINT: this component's own internals

// Rebuilds the in-memory state from the index. Called once, from Open.
Status SsdTier::Impl::Recover() {
  MutexLock write_lock(write_mu);  // Open runs it before the tier is shared: never contended
  std::vector<BlockKey> invalid;
  std::vector<std::pair<BlockKey, SsdEntry>> loaded;
  uint64_t undecodable = 0;
  const SsdGeometry geometry{segment_count, options.segment_bytes, options.max_block_bytes, kAlignment};
  Status load = index->Load(
      [&](const BlockKey& key, const SsdEntry& e) {
        if (SsdEntryFits(e, geometry)) {
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
      [&](OwnerId owner, std::string_view label) {
        MutexLock lock(mu);
        owner_labels[owner] = std::string(label);
      },
      &undecodable);
  if (load.code() == StatusCode::kDataLoss) {
    // Corrupt SST or similar, found only when read: the index is moved aside; start empty.
    KVSTASH_RETURN_IF_ERROR(QuarantineIndex(load.message()));
    invalid.clear();
    loaded.clear();
    undecodable = 0;
    {
      MutexLock lock(mu);
      owner_labels.clear();
    }
    for (Segment& s : segments) {
      s.seq = 0;
      s.used = false;
    }
  } else {
    KVSTASH_RETURN_IF_ERROR(load);
  }
  uint64_t max_seq = 0;
  {
    MutexLock lock(mu);
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
Status SsdTier::Impl::QuarantineIndex(const std::string& reason) {
  KVSTASH_RETURN_IF_ERROR(index->Quarantine(reason));
  return index->WriteLayout({options.segment_bytes, segment_count});
}

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
  } else if (o.io_backend == SsdIoBackend::kThreads) {
    KVSTASH_ASSIGN_OR_RETURN(impl->engine, MakeThreadPoolEngine(eo));
  } else {
    Result<std::unique_ptr<IoEngine>> uring = MakeUringEngine(eo);
    if (uring.ok()) {
      impl->engine = std::move(uring).value();
    } else if (o.io_backend == SsdIoBackend::kUring) {
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

}  // namespace kvstash::tiers
