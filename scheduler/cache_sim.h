// Cache replay for `kvstash-sim cache`: the token-level prefix hit ratio of a Mooncake-format trace
// on one cache of `capacity_blocks` blocks, under a real EvictionPolicy from tiers/ or under a
// reference computed here (Belady's offline optimum, an infinite cache).
//
// The metric: request r hits the longest prefix of its hash_ids that is resident when it arrives;
// it scores min(prefix_blocks x 512, input_length) tokens. The ratio is the sum of scores over the
// sum of input_length. After the lookup every block of the request is made resident (policies) or
// may be kept (Belady). docs/EVICTION.md states the replay order exactly.
//
// Thread-safety: plain functions over const data; each call owns its state.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/trace.h"
#include "kvstash/result.h"
#include "kvstash/reuse_advice.h"
#include "tiers/eviction_policy.h"

namespace kvstash::scheduler {

struct CacheSimResult {
  uint64_t hit_tokens = 0;
  uint64_t input_tokens = 0;
  uint64_t evictions = 0;
  double hit_ratio() const {
    return input_tokens == 0 ? 0.0 : double(hit_tokens) / double(input_tokens);
  }
};

// How the simulated inference engine advises its puts (PutOptions::advice).
enum class EngineAdvice {
  kNone,
  // A request that starts a new context (its first hash id was never named before) is put with
  // kLikely when it generated at most kLikelyMaxOutput tokens — the trace's stand-in for a turn that
  // ends in a tool call or a question the caller will answer — and with kUnlikely when it generated
  // more than kUnlikelyMinOutput (a finished answer). Other requests carry no advice: their
  // context's reuse is already visible to the policy. docs/EVICTION.md has the measurements.
  kOutputLength,
};
inline constexpr uint64_t kLikelyMaxOutput = 20;
inline constexpr uint64_t kUnlikelyMinOutput = 200;

// The advice kOutputLength gives request `r`; `new_context` is whether its first hash id is new.
std::optional<ReuseAdvice> OutputLengthAdvice(const TraceRequest& r, bool new_context);

// Replays `trace` through the eviction policy `policy` (tiers/eviction_policy.h). For each request, in order: the resident prefix is scored; OnAccess for each hit
// block, head first; then each remaining block, head first, is accessed if resident or else
// inserted (OnInsert with its chain predecessor as parent, then OnAdvise with the engine's advice
// when there is one, as the daemon does on commit), evicting PickVictim's choice (every resident
// block is evictable) while the cache is full. INVALID_ARGUMENT for capacity 0.
Result<CacheSimResult> ReplayPolicy(const std::vector<TraceRequest>& trace, uint64_t capacity_blocks,
                                    tiers::EvictionPolicyKind policy, EngineAdvice advice = EngineAdvice::kNone);

// Belady's MIN with bypass: after each request, every block it named is resident with its next-use
// time; while over capacity the block used furthest in the future leaves (never-again first, then
// the deeper block of a chain on ties). A parent is used whenever its child is, so the kept set
// stays prefix-closed and the block hits equal the prefix hits. INVALID_ARGUMENT for capacity 0.
Result<CacheSimResult> ReplayBelady(const std::vector<TraceRequest>& trace, uint64_t capacity_blocks);

// Every block ever named stays resident: the trace's ceiling.
CacheSimResult ReplayInfinite(const std::vector<TraceRequest>& trace);

}  // namespace kvstash::scheduler
