// The conductor's request checks (contract in scheduler/conductor_requests.h).
#include "scheduler/conductor_requests.h"

#include <cmath>

#include "kvstash/prefix_hasher.h"

namespace kvstash::scheduler {

Result<Role> ParseRole(v1::InstanceRole role) {
  switch (role) {
    case v1::INSTANCE_ROLE_PREFILL:
      return Role::kPrefill;
    case v1::INSTANCE_ROLE_DECODE:
      return Role::kDecode;
    default:
      return InvalidArgument("role: must be INSTANCE_ROLE_PREFILL or INSTANCE_ROLE_DECODE");
  }
}

Result<BlockId> ParseBlockKeyId(const std::string& bytes, const char* field, int index) {
  auto key = BlockKey::FromBytes(bytes);
  if (!key.ok()) return InvalidArgument(std::string(field) + "[" + std::to_string(index) + "]: must be 16 bytes");
  return BlockId(BlockKeyHash{}(*key));
}

std::vector<SequenceLoad> HeartbeatSequences(const v1::HeartbeatRequest& req) {
  std::vector<SequenceLoad> seqs;
  seqs.reserve(size_t(req.sequences_size()));
  for (const auto& s : req.sequences()) seqs.push_back({s.context_tokens(), s.remaining_tokens()});
  return seqs;
}

Result<KvEventIds> ParseKvEventBatch(const v1::KvEventBatch& batch) {
  const size_t n = size_t(batch.stored_keys_size()) + size_t(batch.evicted_keys_size()) +
                   size_t(batch.stored_ids_size()) + size_t(batch.evicted_ids_size());
  if (n > kMaxEventBlocks) return InvalidArgument("a KV event batch carries at most 1000000 blocks");
  KvEventIds ids;
  ids.stored.assign(batch.stored_ids().begin(), batch.stored_ids().end());
  ids.evicted.assign(batch.evicted_ids().begin(), batch.evicted_ids().end());
  for (int i = 0; i < batch.stored_keys_size(); ++i) {
    KVSTASH_ASSIGN_OR_RETURN(BlockId id, ParseBlockKeyId(batch.stored_keys(i), "stored_keys", i));
    ids.stored.push_back(id);
  }
  for (int i = 0; i < batch.evicted_keys_size(); ++i) {
    KVSTASH_ASSIGN_OR_RETURN(BlockId id, ParseBlockKeyId(batch.evicted_keys(i), "evicted_keys", i));
    ids.evicted.push_back(id);
  }
  return ids;
}

Result<RouteChain> ParseRouteRequest(const v1::RouteRequest& req, size_t max_input_tokens, uint32_t block_tokens) {
  const int forms = int(req.token_ids_size() > 0) + int(req.block_keys_size() > 0) + int(req.block_ids_size() > 0);
  if (forms != 1) return InvalidArgument("give exactly one of token_ids, block_keys, block_ids");
  if (size_t(req.token_ids_size()) > max_input_tokens || size_t(req.block_keys_size()) > kMaxRouteChain ||
      size_t(req.block_ids_size()) > kMaxRouteChain) {
    return InvalidArgument("prompt too long");
  }
  RouteChain out;
  out.input_tokens = req.input_tokens();
  if (req.token_ids_size() > 0) {
    if (req.model().empty()) return InvalidArgument("model: required with token_ids (it seeds the hash)");
    if (out.input_tokens != 0 && out.input_tokens != uint64_t(req.token_ids_size())) {
      return InvalidArgument("input_tokens: differs from the number of token_ids");
    }
    out.input_tokens = uint64_t(req.token_ids_size());
    PrefixHasher hasher(Namespace{req.model()}, block_tokens);
    out.keys = hasher.Chain({req.token_ids().data(), size_t(req.token_ids_size())});
    for (const BlockKey& k : out.keys) out.chain.push_back(BlockKeyHash{}(k));
  } else if (req.block_keys_size() > 0) {
    for (int i = 0; i < req.block_keys_size(); ++i) {
      KVSTASH_ASSIGN_OR_RETURN(BlockId id, ParseBlockKeyId(req.block_keys(i), "block_keys", i));
      out.chain.push_back(id);
      out.keys.push_back(*BlockKey::FromBytes(req.block_keys(i)));
    }
  } else {
    out.chain.assign(req.block_ids().begin(), req.block_ids().end());
  }
  return out;
}

Status CheckTtftReport(const v1::ReportTtftRequest& req) {
  if (!std::isfinite(req.ttft_seconds()) || req.ttft_seconds() < 0) {
    return InvalidArgument("ttft_seconds: must be a finite number >= 0");
  }
  return Status::Ok();
}

}  // namespace kvstash::scheduler
