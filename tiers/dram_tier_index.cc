// DramTier's sharded block index: lookups (Find with its lease, Peek, Read), lease release, pins,
// listing, the hottest blocks, and the per-shard access buffers through which readers reach the
// eviction policy without its mutex. Lock order: dram_tier_impl.h.
#include "tiers/dram_tier_impl.h"

#include <algorithm>
#include <string>
#include <utility>

namespace kvstash::tiers {

using dram_internal::AtomicMax;
using dram_internal::Entry;
using dram_internal::kAccessBufferCapacity;
using dram_internal::SaturatingAdd;
using dram_internal::Shard;

void DramTier::Impl::RecordAccess(Shard& shard, const BlockKey& key, Entry& e, uint64_t now) {
  e.hits.fetch_add(1, std::memory_order_relaxed);
  AtomicMax(e.last_access_ms, now);
  MutexLock lock(shard.access_mu);
  if (shard.accesses.size() < kAccessBufferCapacity) {
    shard.accesses.push_back(key);
    shard.has_accesses.store(true, std::memory_order_release);
  }
}

void DramTier::Impl::DrainAccessesLocked() {
  std::vector<BlockKey> batch;
  for (Shard& shard : shards) {
    if (!shard.has_accesses.load(std::memory_order_acquire)) continue;
    {
      MutexLock lock(shard.access_mu);
      batch.swap(shard.accesses);
      shard.has_accesses.store(false, std::memory_order_release);
    }
    for (const BlockKey& key : batch) policy->OnAccess(key);
    batch.clear();
    {
      // Hand the (now empty) buffer's capacity back when the shard has not refilled it.
      MutexLock lock(shard.access_mu);
      if (shard.accesses.empty()) batch.swap(shard.accesses);
    }
    batch.clear();
  }
}

bool DramTier::Impl::IsCommitted(const BlockKey& key) const {
  const Shard& shard = ShardFor(key);
  ReaderLock lock(shard.mu);
  return shard.blocks.contains(key);
}

std::optional<BlockMeta> DramTier::Find(const BlockKey& key, uint64_t lease_ms) {
  Impl& d = *impl_;
  Shard& shard = d.ShardFor(key);
  ReaderLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return std::nullopt;
  const uint64_t now = d.Now();
  Entry& e = it->second;
  uint64_t epoch = 0;
  if (lease_ms > 0) {
    MutexLock lease_lock(e.lease_mu);
    if (e.lease_until_ms.load(std::memory_order_acquire) <= now) {
      // The previous lease (if any) ran out: its holders' late releases must not end this one.
      e.lease_holders = 0;
      ++e.lease_epoch;
    }
    ++e.lease_holders;
    AtomicMax(e.lease_until_ms, SaturatingAdd(now, lease_ms));
    epoch = e.lease_epoch;
  }
  d.RecordAccess(shard, key, e, now);
  BlockMeta meta = d.MetaOf(key, e);
  meta.lease_epoch = epoch;
  return meta;
}

Status DramTier::ReleaseLease(const BlockKey& key, uint64_t lease_epoch) {
  Impl& d = *impl_;
  Shard& shard = d.ShardFor(key);
  ReaderLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return NotFound("block " + key.ToHex() + " is not stored");
  Entry& e = it->second;
  MutexLock lease_lock(e.lease_mu);
  if (lease_epoch == 0 || lease_epoch != e.lease_epoch || e.lease_holders == 0) return Status::Ok();  // stale
  if (--e.lease_holders == 0) e.lease_until_ms.store(0, std::memory_order_release);
  return Status::Ok();
}

std::optional<BlockMeta> DramTier::Peek(const BlockKey& key) const {
  const Impl& d = *impl_;
  const Shard& shard = d.ShardFor(key);
  ReaderLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return std::nullopt;
  return d.MetaOf(key, it->second);
}

Result<BlockMeta> DramTier::Read(const BlockKey& key, std::span<std::byte> out) {
  Impl& d = *impl_;
  Shard& shard = d.ShardFor(key);
  ReaderLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return NotFound("block " + key.ToHex() + " is not stored");
  Entry& e = it->second;
  if (out.size() < e.size) {
    return OutOfRange("buffer of " + std::to_string(out.size()) + " bytes is smaller than block " +
                      key.ToHex() + " (" + std::to_string(e.size) + " bytes)");
  }
  KVSTASH_RETURN_IF_ERROR(d.bytes.CopyOut(out.data(), d.arena->base() + e.offset, e.size));
  d.RecordAccess(shard, key, e, d.Now());
  return d.MetaOf(key, e);
}

Status DramTier::SetPinned(const BlockKey& key, bool pinned) {
  Impl& d = *impl_;
  Shard& shard = d.ShardFor(key);
  WriterLock lock(shard.mu);
  auto it = shard.blocks.find(key);
  if (it == shard.blocks.end()) return NotFound("block " + key.ToHex() + " is not stored");
  if (it->second.pinned != pinned) {
    it->second.pinned = pinned;
    if (pinned) {
      d.pinned_blocks.fetch_add(1, std::memory_order_relaxed);
    } else {
      d.pinned_blocks.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  return Status::Ok();
}

// Cost: every shard is scanned under its shared lock (O(n) key comparisons per call) and at most
// `limit` keys per shard are kept (O(limit) extra memory per shard via nth_element), then the
// shards' survivors are merged and the page's metadata is read. Admin use only.
std::vector<BlockMeta> DramTier::Hottest(size_t n) const {
  const Impl& d = *impl_;
  auto hotter = [](const BlockMeta& a, const BlockMeta& b) { return a.hits > b.hits; };
  std::vector<BlockMeta> top;  // a min-heap on hits of at most n entries
  if (n == 0) return top;
  for (const Shard& shard : d.shards) {
    ReaderLock lock(shard.mu);
    for (const auto& [key, entry] : shard.blocks) {
      const uint64_t hits = entry.hits.load(std::memory_order_relaxed);
      if (top.size() == n && hits <= top.front().hits) continue;
      top.push_back(d.MetaOf(key, entry));
      std::push_heap(top.begin(), top.end(), hotter);
      if (top.size() > n) {
        std::pop_heap(top.begin(), top.end(), hotter);
        top.pop_back();
      }
    }
  }
  std::sort(top.begin(), top.end(), hotter);
  return top;
}

ListPage DramTier::List(const std::optional<BlockKey>& after, size_t limit) const {
  const Impl& d = *impl_;
  std::vector<BlockKey> chosen;
  std::vector<BlockKey> shard_keys;
  bool more = false;  // keys beyond the page exist
  for (const Shard& shard : d.shards) {
    shard_keys.clear();
    {
      ReaderLock lock(shard.mu);
      for (const auto& [key, entry] : shard.blocks) {
        if (!after || key > *after) shard_keys.push_back(key);
      }
    }
    if (shard_keys.size() > limit) {
      more = true;
      std::nth_element(shard_keys.begin(), shard_keys.begin() + static_cast<std::ptrdiff_t>(limit),
                       shard_keys.end());
      shard_keys.resize(limit);
    }
    chosen.insert(chosen.end(), shard_keys.begin(), shard_keys.end());
    if (chosen.size() > limit) {
      more = true;
      std::nth_element(chosen.begin(), chosen.begin() + static_cast<std::ptrdiff_t>(limit),
                       chosen.end());
      chosen.resize(limit);
    }
  }
  std::sort(chosen.begin(), chosen.end());

  ListPage page;
  if (limit == 0) {
    if (more) page.next_after = after;
    return page;
  }
  page.blocks.reserve(chosen.size());
  for (const BlockKey& key : chosen) {
    // A block removed since the scan is skipped; the cursor still moves past it.
    if (auto meta = Peek(key)) page.blocks.push_back(std::move(*meta));
  }
  if (more && !chosen.empty()) page.next_after = chosen.back();
  return page;
}

}  // namespace kvstash::tiers
