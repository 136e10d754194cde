// SsdTier's log (internals in tiers/ssd_tier_impl.h): writes are planned into the open segment,
// flushed as one batch and indexed; reclaim; removes.
#include "tiers/ssd_records.h"
#include "tiers/ssd_tier_impl.h"

namespace kvstash::tiers {

using namespace ssd_detail;  // NOLINT: this component's own internals

// Applies `m` to RocksDB together with every pending deletion (first, so a key deleted and
// written again ends up written). REQUIRES: write_mu.
Status SsdTier::Impl::ApplyLocked(SsdIndex::Mutation m) {
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
void SsdTier::Impl::DropLocked(const BlockKey& key, std::optional<uint64_t> only_seq) {
  {
    MutexLock lock(mu);
    auto it = blocks.find(key);
    if (it == blocks.end() || (only_seq && it->second.e.seq != *only_seq)) return;
    EraseLocked(it);
  }
  pending_deletes.insert(key);
  pending_deletes_count.store(pending_deletes.size(), std::memory_order_relaxed);
  (void)ApplyLocked({});  // a refusal keeps it pending
}

// Writes every pending block, indexes the ones that made it, reports the callers' items.
// Without `sync`, blocks are indexed in chunks as their writes complete, so RocksDB's WAL write
// overlaps the device's work on the rest of the batch; with `sync`, only after the segment
// files are synced. Either way a block is indexed only once its bytes are written.
// REQUIRES: write_mu.
void SsdTier::Impl::FlushLocked(WriteContext& ctx) {
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
    write_mu.AssertHeld();  // runs within this function, under its write_mu
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
      MutexLock lock(mu);
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
Result<uint32_t> SsdTier::Impl::ReclaimOldestLocked(WriteContext& ctx) {
  const uint32_t victim = fifo.front();
  std::vector<std::pair<BlockKey, MemEntry>> live;
  {
    MutexLock lock(mu);
    for (const BlockKey& key : segments[victim].keys) {
      // Only blocks whose current entry lies in the victim: deleting any other key's record here
      // would drop a block that lives on elsewhere.
      auto it = blocks.find(key);
      if (it != blocks.end() && it->second.e.segment == victim) live.emplace_back(key, it->second);
    }
  }
  // Carried into the reclaimed segment: every block of an owner within its quota (protected; they
  // all fit, as they all came from this segment), then the hottest others within the budget.
  std::sort(live.begin(), live.end(), [](const auto& a, const auto& b) { return a.second.hits > b.second.hits; });
  const uint64_t budget = static_cast<uint64_t>(options.reinsert_max_fraction *
                                                static_cast<double>(options.segment_bytes));
  std::vector<std::pair<BlockKey, MemEntry>> hot;
  std::unordered_set<BlockKey, BlockKeyHash> kept_for_owner;
  uint64_t hot_bytes = 0, hot_only_bytes = 0;
  {
    MutexLock lock(mu);
    for (const auto& kv : live) {
      const uint64_t padded = PaddedSize(kv.second.e.size);
      if (ProtectedLocked(kv.second.e.owner)) {
        kept_for_owner.insert(kv.first);
      } else if (options.reinsert_min_hits == 0 || kv.second.hits < options.reinsert_min_hits ||
                 hot_only_bytes + padded > budget) {
        continue;
      } else {
        hot_only_bytes += padded;
      }
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
    MutexLock lock(mu);
    for (const auto& kv : live) {
      auto it = blocks.find(kv.first);
      if (it != blocks.end() && it->second.e.segment == victim) EraseLocked(it);
    }
    // Charged now, taken back below for each block that is carried.
    for (const auto& kv : live) ++owners[kv.second.e.owner].usage.evictions;
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
    if (kept_for_owner.contains(p.key)) blocks_kept_for_owners.fetch_add(1, std::memory_order_relaxed);
  }
  {
    MutexLock lock(mu);
    for (const Planned& p : ctx.pending) --owners[p.entry.owner].usage.evictions;
  }
  blocks_reclaimed.fetch_add(live.size() - ctx.pending.size(), std::memory_order_relaxed);
  if (!ctx.pending.empty()) ctx.buffers.push_back(std::move(hot_buf));
  open_offset = kept;
  return victim;
}

// Finds room for `padded` bytes in the open segment, opening (and if need be reclaiming) the
// next one. Returns (segment, offset). REQUIRES: write_mu.
Result<std::pair<uint32_t, uint64_t>> SsdTier::Impl::AllocateLocked(uint64_t padded, WriteContext& ctx) {
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
        MutexLock lock(mu);
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

Status SsdTier::Impl::MakeRoomForOwnerLocked(OwnerId owner, uint64_t padded, uint64_t planned) {
  if (owner == kNoOwner || options.quotas == nullptr) return Status::Ok();
  const uint64_t quota = options.quotas->QuotaOf(owner);
  if (quota == 0) return Status::Ok();
  MutexLock lock(mu);
  OwnerState& o = owners[owner];
  o.usage.owner = owner;
  if (planned + padded > quota) {
    ++o.usage.quota_rejections;
    return ResourceExhausted("a " + std::to_string(padded) + "-byte block does not fit its owner's ssd quota of " +
                             std::to_string(quota) + " bytes");
  }
  while (o.usage.bytes + planned + padded > quota && !o.by_seq.empty()) {
    const BlockKey oldest = o.by_seq.begin()->second;
    EraseLocked(blocks.find(oldest));
    ++o.usage.evictions;
    pending_deletes.insert(oldest);  // written with this call's batch
  }
  pending_deletes_count.store(pending_deletes.size(), std::memory_order_relaxed);
  return Status::Ok();
}

std::vector<Status> SsdTier::Write(std::span<const SsdWrite> items) {
  Impl& d = *impl_;
  std::vector<Status> out(items.size());
  WriteContext ctx;
  ctx.out = &out;
  std::unordered_set<BlockKey, BlockKeyHash> seen;
  std::unordered_map<OwnerId, uint64_t> planned_by_owner;  // padded bytes planned in this call
  MutexLock write(d.write_mu);
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
    if (Status room = d.MakeRoomForOwnerLocked(w.owner, padded, planned_by_owner[w.owner]); !room.ok()) {
      out[i] = room;
      continue;
    }
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
    p.entry.owner = w.owner;
    planned_by_owner[w.owner] += padded;
    p.src = src;
    p.item = i;
    ctx.pending.push_back(p);
  }
  d.FlushLocked(ctx);
  return out;
}

Status SsdTier::Write(const SsdWrite& item) { return Write(std::span<const SsdWrite>(&item, 1))[0]; }

Status SsdTier::LabelOwner(OwnerId owner, const std::string& label) {
  Impl& d = *impl_;
  if (owner == kNoOwner || label.empty() || label.size() > kMaxOwnerLabelBytes) {
    return InvalidArgument("an owner label names an owner other than 0 with 1.." +
                           std::to_string(kMaxOwnerLabelBytes) + " bytes");
  }
  MutexLock write(d.write_mu);
  {
    MutexLock lock(d.mu);
    auto it = d.owner_labels.find(owner);
    if (it != d.owner_labels.end() && it->second == label) return Status::Ok();
  }
  SsdIndex::Mutation m;
  m.owner_labels.emplace_back(owner, label);
  KVSTASH_RETURN_IF_ERROR(d.ApplyLocked(std::move(m)));
  MutexLock lock(d.mu);
  d.owner_labels[owner] = label;
  return Status::Ok();
}

Status SsdTier::Remove(const BlockKey& key) {
  Impl& d = *impl_;
  if (!Contains(key)) return NotFound("block " + key.ToHex() + " is not on ssd");  // no writer wait
  MutexLock write(d.write_mu);
  if (!Contains(key)) return NotFound("block " + key.ToHex() + " is not on ssd");
  d.DropLocked(key, std::nullopt);
  return Status::Ok();
}

}  // namespace kvstash::tiers
