#include "server/eager_get_source.h"

#include "common/checksum.h"

namespace kvstash::server {

Result<transfer::GetSource::Found> EagerGetSource::Acquire(const BlockKey& key) {
  std::optional<tiers::BlockMeta> meta = tier_.dram().Find(key, lease_ms_);
  if (!meta) {
    if (tier_.hbm() != nullptr || tier_.ssd() != nullptr) {
      // Perhaps in a tier below: not answered here (that could mean a device read on this thread).
      return FailedPrecondition("block " + key.ToHex() + " is not in DRAM here: locate it");
    }
    metrics_.RecordGetBlocks(0, 1);
    return NotFound("block " + key.ToHex() + " is not stored");
  }
  if (verify_ && BlockChecksum(meta->data, meta->size) != meta->checksum) {
    (void)tier_.ReleaseLease(key, meta->lease_epoch);
    return DataLoss("block " + key.ToHex() + " failed its checksum on the daemon; not sent");
  }
  metrics_.RecordGetBlocks(1, 0);
  if (hooks_ != nullptr) hooks_->OnHit(key);
  return Found{meta->data, meta->size, meta->checksum, meta->lease_epoch};
}

void EagerGetSource::Release(const BlockKey& key, uint64_t lease_epoch) { (void)tier_.ReleaseLease(key, lease_epoch); }

}  // namespace kvstash::server
