// Conversions between the wire messages (kvstash.v1) and the SDK's public types. Internal to
// libkvstash; every field from the daemon is checked before it reaches the caller.
#pragma once

#include <grpcpp/grpcpp.h>

#include "kvstash/client.h"
#include "kvstash/v1/store.pb.h"

namespace kvstash::client_internal {

// UNAVAILABLE/DEADLINE_EXCEEDED become "cannot reach kvstashd at ADDR: ..."; other codes keep
// their code and the daemon's message, prefixed with the op.
Status FromGrpc(const grpc::Status& status, std::string_view op, const std::string& address);

Result<BlockInfo> FromProto(const v1::BlockInfo& info);
StoreStats FromProto(const v1::StatsResponse& stats);
TierName FromProto(v1::Tier tier);

// Fills result.stored / existed / failed from result.outcomes.
void CountOutcomes(PutResult& result);

}  // namespace kvstash::client_internal
