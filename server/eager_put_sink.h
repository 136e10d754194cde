// EagerPutSink: stores the daemon's eager puts (transfer::PutSink; docs/DATA_PLANE.md "Eager
// puts"). The same rules as PutBegin/PutCommit: sizes within --max-block, existing keys are
// deduplicated (the answer is ALREADY_EXISTS and the bytes are dropped), the checksum is verified
// over the reserved region before the block becomes visible, and a failed put leaves nothing.
//
// Thread-safety: called by the transfer server's progress and verifier threads, concurrently; the
// tier and metrics are thread-safe.
#pragma once

#include "server/server_metrics.h"
#include "tiers/tier_manager.h"
#include "transfer/transfer_server.h"

namespace kvstash::server {

class EagerPutSink final : public transfer::PutSink {
 public:
  EagerPutSink(tiers::TierManager& tier, ServerMetrics& metrics, uint64_t max_block_bytes)
      : tier_(tier), metrics_(metrics), max_block_bytes_(max_block_bytes) {}

  Result<Space> Reserve(const transfer::EagerPut& put, std::chrono::milliseconds timeout) override;
  Status Commit(const transfer::EagerPut& put, uint64_t reservation_id) override;
  void Abort(uint64_t reservation_id) override;

 private:
  tiers::TierManager& tier_;
  ServerMetrics& metrics_;
  const uint64_t max_block_bytes_;
};

}  // namespace kvstash::server
