#include "gpu/hbm_tier.h"

#include <xxhash.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "common/mutex.h"

namespace kvstash::gpu {
namespace {

class CudaBytes final : public tiers::ByteAccess {
 public:
  explicit CudaBytes(uint64_t chunk_bytes) : chunk_bytes_(chunk_bytes) {}

  bool host_addressable() const override { return false; }

  Status CopyOut(std::byte* dst, const std::byte* src, uint64_t size) const override {
    return CudaStatus(cudaMemcpy(dst, src, size, cudaMemcpyDefault), "copying a block out of device memory");
  }

  Status CopyIn(std::byte* dst, const std::byte* src, uint64_t size) const override {
    return CudaStatus(cudaMemcpy(dst, src, size, cudaMemcpyDefault), "copying a block into device memory");
  }

  // Streams the bytes through one pinned chunk buffer taken from a pool (one per concurrent
  // caller), so hashing a block needs neither a block-sized host buffer nor pageable copies.
  Result<uint64_t> Checksum(const std::byte* src, uint64_t size) const override {
    KVSTASH_ASSIGN_OR_RETURN(PinnedBuffer chunk, Take());
    XXH3_state_t* state = XXH3_createState();
    if (state == nullptr) {
      Give(std::move(chunk));
      return ResourceExhausted("cannot allocate an XXH3 state");
    }
    XXH3_64bits_reset(state);
    Status st = Status::Ok();
    for (uint64_t done = 0; done < size && st.ok();) {
      const uint64_t n = std::min<uint64_t>(chunk.size(), size - done);
      st = CudaStatus(cudaMemcpy(chunk.data(), src + done, n, cudaMemcpyDefault), "copying a block to hash it");
      if (st.ok()) XXH3_64bits_update(state, chunk.data(), n);
      done += n;
    }
    const uint64_t digest = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    Give(std::move(chunk));
    if (!st.ok()) return st;
    return digest;
  }

 private:
  Result<PinnedBuffer> Take() const {
    {
      MutexLock lock(mu_);
      if (!free_.empty()) {
        PinnedBuffer b = std::move(free_.back());
        free_.pop_back();
        return b;
      }
    }
    return PinnedBuffer::Allocate(chunk_bytes_);
  }
  void Give(PinnedBuffer b) const {
    MutexLock lock(mu_);
    free_.push_back(std::move(b));
  }

  uint64_t chunk_bytes_;
  mutable Mutex mu_;
  mutable std::vector<PinnedBuffer> free_ GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<tiers::ByteAccess> MakeCudaByteAccess(uint64_t chunk_bytes) {
  return std::make_unique<CudaBytes>(std::max<uint64_t>(chunk_bytes, 4096));
}

Result<std::unique_ptr<HbmTier>> HbmTier::Create(const HbmTierOptions& options) {
  const DeviceSummary devices = ProbeDevices();
  if (devices.count == 0) return Unavailable("no CUDA device for the HBM tier: " + devices.reason);
  if (options.device < 0 || options.device >= devices.count) {
    return InvalidArgument("GPU " + std::to_string(options.device) + " does not exist (" +
                           std::to_string(devices.count) + " present)");
  }
  if (options.tier.capacity_bytes == 0) return InvalidArgument("capacity_bytes must be > 0");
  int previous = 0;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaGetDevice(&previous), "cudaGetDevice"));
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(options.device), "cudaSetDevice"));
  Result<DeviceBuffer> arena = DeviceBuffer::Allocate(options.tier.capacity_bytes);
  const Status restored = CudaStatus(cudaSetDevice(previous), "cudaSetDevice");
  if (!arena.ok()) return arena.status();
  KVSTASH_RETURN_IF_ERROR(restored);

  std::unique_ptr<tiers::ByteAccess> bytes = MakeCudaByteAccess();
  tiers::DramTierOptions o = options.tier;
  o.huge_pages = tiers::HugePages::kOff;
  o.external_arena = arena->data();
  o.byte_access = bytes.get();
  o.tier_kind = tiers::TierKind::kHbm;
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<tiers::DramTier> tier, tiers::DramTier::Create(o));
  return std::unique_ptr<HbmTier>(new HbmTier(options.device, std::move(*arena), std::move(bytes), std::move(tier)));
}

HbmTier::HbmTier(int device, DeviceBuffer arena, std::unique_ptr<tiers::ByteAccess> bytes,
                 std::unique_ptr<tiers::DramTier> tier)
    : device_(device), arena_(std::move(arena)), bytes_(std::move(bytes)), tier_(std::move(tier)) {}

HbmTier::~HbmTier() = default;

Result<tiers::Reservation> HbmTier::Reserve(const BlockKey& key, uint64_t size, const std::optional<BlockKey>& parent,
                                            uint64_t timeout_ms, tiers::OwnerId owner) {
  return tier_->Reserve(key, size, parent, timeout_ms, owner);
}
Result<tiers::BlockMeta> HbmTier::Commit(uint64_t reservation_id, uint64_t checksum, bool pin) {
  return tier_->Commit(reservation_id, checksum, pin);
}
Status HbmTier::Abort(uint64_t reservation_id) { return tier_->Abort(reservation_id); }
Result<tiers::Reservation> HbmTier::GetReservation(uint64_t reservation_id) const {
  return tier_->GetReservation(reservation_id);
}
std::optional<tiers::BlockMeta> HbmTier::Find(const BlockKey& key, uint64_t lease_ms) {
  return tier_->Find(key, lease_ms);
}
Status HbmTier::ReleaseLease(const BlockKey& key, uint64_t lease_epoch) {
  return tier_->ReleaseLease(key, lease_epoch);
}
std::optional<tiers::BlockMeta> HbmTier::Peek(const BlockKey& key) const { return tier_->Peek(key); }
Result<tiers::BlockMeta> HbmTier::Read(const BlockKey& key, std::span<std::byte> out) { return tier_->Read(key, out); }
Status HbmTier::Remove(const BlockKey& key) { return tier_->Remove(key); }
Status HbmTier::SetPinned(const BlockKey& key, bool pinned) { return tier_->SetPinned(key, pinned); }
Status HbmTier::Advise(const BlockKey& key, ReuseAdvice advice) { return tier_->Advise(key, advice); }
tiers::ListPage HbmTier::List(const std::optional<BlockKey>& after, size_t limit) const {
  return tier_->List(after, limit);
}
size_t HbmTier::ReclaimExpired() { return tier_->ReclaimExpired(); }
tiers::TierUsage HbmTier::Usage() const { return tier_->Usage(); }
tiers::TierCounters HbmTier::Counters() const { return tier_->Counters(); }

}  // namespace kvstash::gpu
