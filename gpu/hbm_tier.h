// HbmTier: blocks in one cudaMalloc'd arena on a GPU, under the tiers::Tier interface (docs/ARCHITECTURE.md §1,
// `hbm`). The index, allocator, eviction policy, reservations and leases are DramTier's, running
// over the device arena in external-memory mode; only the byte accesses differ (tiers/byte_access.h):
// Read copies out with cudaMemcpy (to host or device memory), Commit hashes the reservation's
// bytes by streaming them through pinned host chunks into XXH3, and on_evict receives a host copy.
//
// Reservation::data and BlockMeta::data are device addresses: writers fill a reservation with a
// GPU kernel, cudaMemcpy, or a UCX put when UCX handles CUDA memory (gpu_data_path.h says
// `direct`); otherwise through the StagingPipeline. Every byte must have landed (stream
// synchronised) before Commit.
//
// Thread-safety: as tiers::Tier (every method from any thread). No method changes the calling
// thread's current CUDA device.
#pragma once

#include <cstdint>
#include <memory>

#include "gpu/cuda_util.h"
#include "tiers/dram_tier.h"

namespace kvstash::gpu {

struct HbmTierOptions {
  int device = 0;  // the GPU whose memory holds the arena (kvstashd --gpu N)
  // capacity_bytes (kvstashd --hbm-capacity), watermarks, max_block_bytes, eviction_policy,
  // index_shards, clock, on_evict, expired_quarantine_ms: as for DramTier. HbmTier sets
  // huge_pages, external_arena, byte_access and tier_kind itself.
  tiers::DramTierOptions tier;
};

class HbmTier final : public tiers::Tier {
 public:
  // UNAVAILABLE without a usable device; INVALID_ARGUMENT for a bad device index or options
  // DramTier refuses; RESOURCE_EXHAUSTED when the device lacks the memory.
  static Result<std::unique_ptr<HbmTier>> Create(const HbmTierOptions& options);
  ~HbmTier() override;

  tiers::TierKind kind() const override { return tiers::TierKind::kHbm; }
  Result<tiers::Reservation> Reserve(const BlockKey& key, uint64_t size, const std::optional<BlockKey>& parent,
                                     uint64_t timeout_ms, tiers::OwnerId owner = tiers::kNoOwner) override;
  Result<tiers::BlockMeta> Commit(uint64_t reservation_id, uint64_t checksum, bool pin) override;
  Status Abort(uint64_t reservation_id) override;
  Result<tiers::Reservation> GetReservation(uint64_t reservation_id) const override;
  std::optional<tiers::BlockMeta> Find(const BlockKey& key, uint64_t lease_ms) override;
  Status ReleaseLease(const BlockKey& key, uint64_t lease_epoch) override;
  std::optional<tiers::BlockMeta> Peek(const BlockKey& key) const override;
  // `out` may be host or device memory.
  Result<tiers::BlockMeta> Read(const BlockKey& key, std::span<std::byte> out) override;
  Status Remove(const BlockKey& key) override;
  Status SetPinned(const BlockKey& key, bool pinned) override;
  Status Advise(const BlockKey& key, ReuseAdvice advice) override;
  tiers::ListPage List(const std::optional<BlockKey>& after, size_t limit) const override;
  size_t ReclaimExpired() override;
  tiers::TierUsage Usage() const override;
  tiers::TierCounters Counters() const override;

  int device() const { return device_; }
  // The device arena, for registration with UCX when the data path is `direct`.
  std::byte* arena_base() const { return arena_.data(); }
  uint64_t arena_bytes() const { return arena_.size(); }
  std::string_view policy_name() const { return tier_->policy_name(); }
  // Copies into and out of the arena (cudaMemcpy); lives as long as the tier.
  const tiers::ByteAccess& byte_access() const { return *bytes_; }

 private:
  HbmTier(int device, DeviceBuffer arena, std::unique_ptr<tiers::ByteAccess> bytes,
          std::unique_ptr<tiers::DramTier> tier);
  int device_;
  DeviceBuffer arena_;                        // outlives bytes_ and tier_ (declared first)
  std::unique_ptr<tiers::ByteAccess> bytes_;  // outlives tier_
  std::unique_ptr<tiers::DramTier> tier_;
};

// The ByteAccess of device memory (cudaMemcpy; XXH3 through pinned chunks of `chunk_bytes`).
// Exposed for tests and for other device arenas.
std::unique_ptr<tiers::ByteAccess> MakeCudaByteAccess(uint64_t chunk_bytes = 4ULL << 20);

}  // namespace kvstash::gpu
