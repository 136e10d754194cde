#include "client/wire.h"

namespace kvstash::client_internal {

Status FromGrpc(const grpc::Status& status, std::string_view op, const std::string& address) {
  if (status.ok()) return Status::Ok();
  const auto code = static_cast<StatusCode>(status.error_code());
  if (code == StatusCode::kUnavailable) {
    return Unavailable("cannot reach kvstashd at " + address + ": " + status.error_message());
  }
  if (code == StatusCode::kDeadlineExceeded) {
    return DeadlineExceeded(std::string(op) + " to kvstashd at " + address + " timed out");
  }
  return Status(code, std::string(op) + ": " + status.error_message());
}

void CountOutcomes(PutResult& result) {
  result.stored = result.existed = result.failed = 0;
  for (PutOutcome o : result.outcomes) {
    if (o == PutOutcome::kStored) ++result.stored;
    else if (o == PutOutcome::kExists) ++result.existed;
    else ++result.failed;
  }
}

TierName FromProto(v1::Tier tier) {
  switch (tier) {
    case v1::TIER_HBM: return TierName::kHbm;
    case v1::TIER_DRAM: return TierName::kDram;
    case v1::TIER_SSD: return TierName::kSsd;
    default: return TierName::kUnknown;
  }
}

Result<BlockInfo> FromProto(const v1::BlockInfo& p) {
  BlockInfo info;
  KVSTASH_ASSIGN_OR_RETURN(info.key, BlockKey::FromBytes(p.key()));
  if (!p.parent().empty()) {
    KVSTASH_ASSIGN_OR_RETURN(BlockKey parent, BlockKey::FromBytes(p.parent()));
    info.parent = parent;
  }
  info.size = p.size();
  info.checksum = p.checksum();
  info.tier = FromProto(p.tier());
  info.generation = p.generation();
  info.lease_until_ms = p.lease_until_ms();
  info.pinned = p.pinned();
  info.hits = p.hits();
  info.age_ms = p.age_ms();
  info.remote_addr = p.remote_addr();
  info.lease_epoch = p.lease_epoch();
  info.read_grant = p.read_grant();
  info.replicas = p.replicas();
  return info;
}

StoreStats FromProto(const v1::StatsResponse& p) {
  StoreStats s;
  s.version = p.version();
  s.member_id = p.member_id();
  s.uptime_ms = p.uptime_ms();
  for (const auto& t : p.tiers()) {
    TierStats ts;
    ts.tier = FromProto(t.tier());
    ts.capacity_bytes = t.capacity_bytes();
    ts.used_bytes = t.used_bytes();
    ts.reserved_bytes = t.reserved_bytes();
    ts.blocks = t.blocks();
    ts.leased_blocks = t.leased_blocks();
    ts.pinned_blocks = t.pinned_blocks();
    ts.evictions = t.evictions();
    ts.eviction_policy = t.eviction_policy();
    ts.huge_pages = t.huge_pages();
    s.tiers.push_back(std::move(ts));
  }
  s.lookup_hit_blocks = p.lookup_hit_blocks();
  s.lookup_miss_blocks = p.lookup_miss_blocks();
  s.get_hits = p.get_hits();
  s.get_misses = p.get_misses();
  s.puts_stored = p.puts_stored();
  s.puts_deduplicated = p.puts_deduplicated();
  s.reservations_open = p.reservations_open();
  s.data_plane = p.data_plane();
  s.gpu_data_path = p.gpu_data_path();
  s.hbm_serving = p.hbm_serving();
  for (const auto& b : p.hottest()) {
    if (auto info = FromProto(b); info.ok()) s.hottest.push_back(std::move(*info));
  }
  s.put_bytes_inline = p.put_bytes_inline();
  s.put_bytes_one_sided = p.put_bytes_one_sided();
  s.put_bytes_two_sided = p.put_bytes_two_sided();
  s.get_bytes_two_sided = p.get_bytes_two_sided();
  s.two_sided_sends_in_flight = p.two_sided_sends_in_flight();
  s.two_sided_rejected = p.two_sided_rejected();
  s.two_sided_receives_open = p.two_sided_receives_open();
  s.eager_puts_stored = p.eager_puts_stored();
  s.eager_puts_refused = p.eager_puts_refused();
  s.eager_puts_failed = p.eager_puts_failed();
  s.eager_gets_sent = p.eager_gets_sent();
  s.eager_gets_refused = p.eager_gets_refused();
  for (const auto& [reason, count] : p.refused_messages()) s.refused_messages[reason] = count;
  s.corrupt_blocks = p.corrupt_blocks();
  s.one_sided_transports = p.one_sided_transports();
  s.membership = p.membership();
  return s;
}

}  // namespace kvstash::client_internal
