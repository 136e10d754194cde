// EagerGetSource: finds blocks for the daemon's eager gets (transfer::GetSource; docs/DATA_PLANE.md
// "Eager gets"). Only DRAM-resident blocks are sent this way — leased for the send like any
// located block, counted as hits like any Get. A block held only in HBM or on SSD is refused with
// FAILED_PRECONDITION, so the reader locates it through the control plane, which moves it into
// DRAM: the transfer server's progress thread never waits on a device.
//
// Thread-safety: called by the transfer server's progress thread; the tier, metrics and hooks are
// thread-safe.
#pragma once

#include "server/server_metrics.h"
#include "server/store_service.h"
#include "tiers/tier_manager.h"
#include "transfer/transfer_server.h"

namespace kvstash::server {

class EagerGetSource final : public transfer::GetSource {
 public:
  // `hooks` may be null (no hot-block replication).
  // `verify`: hash each block before it is sent and refuse (DATA_LOSS) one that fails.
  EagerGetSource(tiers::TierManager& tier, ServerMetrics& metrics, uint64_t lease_ms, AccessHooks* hooks,
                 bool verify = true)
      : tier_(tier), metrics_(metrics), lease_ms_(lease_ms), hooks_(hooks), verify_(verify) {}

  Result<Found> Acquire(const BlockKey& key) override;
  void Release(const BlockKey& key, uint64_t lease_epoch) override;

 private:
  tiers::TierManager& tier_;
  ServerMetrics& metrics_;
  const uint64_t lease_ms_;
  AccessHooks* hooks_;
  const bool verify_;
};

}  // namespace kvstash::server
