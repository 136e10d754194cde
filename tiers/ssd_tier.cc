// SsdTier (contract in tiers/ssd_tier.h; its internals and which file does what: tiers/ssd_tier_impl.h).
#include "tiers/ssd_tier_impl.h"

namespace kvstash::tiers {

using namespace ssd_detail;  // NOLINT: this component's own internals

uint64_t SsdTier::PaddedSize(uint64_t size) { return (size + kAlignment - 1) / kAlignment * kAlignment; }

SsdTier::SsdTier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SsdTier::~SsdTier() = default;

std::optional<SsdBlockInfo> SsdTier::Lookup(const BlockKey& key) const {
  MutexLock lock(impl_->mu);
  auto it = impl_->blocks.find(key);
  if (it == impl_->blocks.end()) return std::nullopt;
  return Impl::InfoOf(key, it->second);
}

bool SsdTier::Contains(const BlockKey& key) const {
  MutexLock lock(impl_->mu);
  return impl_->blocks.contains(key);
}

std::vector<SsdBlockInfo> SsdTier::List(const std::optional<BlockKey>& after, size_t limit) const {
  std::vector<SsdBlockInfo> out;
  MutexLock lock(impl_->mu);
  auto it = after ? impl_->blocks.upper_bound(*after) : impl_->blocks.begin();
  for (; it != impl_->blocks.end() && out.size() < limit; ++it) out.push_back(Impl::InfoOf(it->first, it->second));
  return out;
}

SsdUsage SsdTier::Usage() const {
  const Impl& d = *impl_;
  SsdUsage u;
  u.capacity_bytes = d.segment_count * d.options.segment_bytes;
  u.segments = d.segment_count;
  MutexLock lock(d.mu);
  u.live_bytes = d.live_bytes;
  u.blocks = d.blocks.size();
  for (const Segment& s : d.segments) u.free_segments += s.used ? 0 : 1;
  return u;
}

std::vector<std::pair<OwnerId, std::string>> SsdTier::OwnerLabels() const {
  Impl& d = *impl_;
  MutexLock lock(d.mu);
  return {d.owner_labels.begin(), d.owner_labels.end()};
}

std::vector<OwnerUsage> SsdTier::OwnerUsages() const {
  Impl& d = *impl_;
  std::vector<OwnerUsage> out;
  {
    MutexLock lock(d.mu);
    for (const auto& [owner, state] : d.owners) {
      if (owner != kNoOwner) out.push_back(state.usage);
    }
  }
  std::sort(out.begin(), out.end(), [](const OwnerUsage& a, const OwnerUsage& b) { return a.owner < b.owner; });
  return out;
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
  c.blocks_kept_for_owners = d.blocks_kept_for_owners.load(std::memory_order_relaxed);
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
