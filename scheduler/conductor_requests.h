// The conductor's gRPC requests (proto/kvstash/v1/conductor.proto) checked at the edge, before the
// service takes its lock or touches any state: each function answers INVALID_ARGUMENT naming the
// field, or the request in the form ConductorState and the Router take. ConductorState checks the
// rest as it applies them (instance ids and addresses up to 256 bytes, finite times, known ids).
// Pure functions, so that a fuzzer (fuzz/conductor_request_fuzz.cc) reaches every one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kvstash/block_key.h"
#include "kvstash/result.h"
#include "kvstash/v1/conductor.pb.h"
#include "scheduler/block_cache.h"
#include "scheduler/conductor_state.h"

namespace kvstash::scheduler {

inline constexpr size_t kMaxRouteChain = 1'000'000;   // block_keys or block_ids of one Route
inline constexpr size_t kMaxEventBlocks = 1'000'000;  // keys and ids of one KV event batch

// INSTANCE_ROLE_PREFILL or INSTANCE_ROLE_DECODE; anything else is refused.
Result<Role> ParseRole(v1::InstanceRole role);

// The id of a 16-byte block key (its BlockKeyHash); `field`[`index`] names it when it is refused.
Result<BlockId> ParseBlockKeyId(const std::string& bytes, const char* field, int index);

// A heartbeat's decode sequences, as ConductorState::DecodeHeartbeat takes them (it bounds the count).
std::vector<SequenceLoad> HeartbeatSequences(const v1::HeartbeatRequest& req);

// A KV event batch: at most kMaxEventBlocks keys and ids together, every key 16 bytes. The ids
// come first, then the keys' ids, in the order given.
struct KvEventIds {
  std::vector<BlockId> stored;
  std::vector<BlockId> evicted;
};
Result<KvEventIds> ParseKvEventBatch(const v1::KvEventBatch& batch);

// A Route's chain: exactly one of token_ids (at most max_input_tokens, with a model to hash them
// in, blocks of block_tokens tokens, and input_tokens 0 or equal to their count), block_keys (16
// bytes each) or block_ids, the latter two at most kMaxRouteChain. `keys` holds the chain's block
// keys when the request gives them (token_ids or block_keys), else it is empty.
struct RouteChain {
  std::vector<BlockId> chain;
  std::vector<BlockKey> keys;
  uint64_t input_tokens = 0;
};
Result<RouteChain> ParseRouteRequest(const v1::RouteRequest& req, size_t max_input_tokens, uint32_t block_tokens);

// ttft_seconds finite and >= 0.
Status CheckTtftReport(const v1::ReportTtftRequest& req);

}  // namespace kvstash::scheduler
