// Simulator: discrete-event replay of a request trace over N prefill and M decode instances, driven
// by the same Router/Policy objects as the live conductor.
//
// Model:
//  * Requests arrive at trace timestamp / rate_scale and are routed at once (Router).
//  * Prefill instances run one prefill at a time, FIFO. A request starts when the instance is free
//    and any fetched prefix has arrived (start = max(free, arrival + transfer)); it takes
//    CostModel::PrefillSeconds(n, cached). TTFT = prefill end − arrival.
//  * Each prefill instance has an LRU BlockCache of local_cache_blocks blocks. At routing the
//  reused
//    prefix is refreshed; at prefill end the whole chain is inserted, so an instance that fetched a
//    prefix from another holder becomes a replica of it (cache load balancing).
//  * Decode instances run continuous batching: a step advances every running sequence by one token
//    and takes CostModel::DecodeStepSeconds(batch, context). Sequences join between steps while
//    batch < decode_max_batch and the KV fits decode_kv_tokens. The first output token comes from
//    prefill; TBT of a request = (last token time − prefill end) / (output_length − 1).
//  * Ties in time are broken by event creation order, and the only randomness is the seeded policy
//    RNG, so a run is a pure function of (trace, cost, options).
//
// Thread-safety: Simulate is reentrant; concurrent calls share nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/trace.h"
#include "kvstash/result.h"
#include "scheduler/router.h"

namespace kvstash::scheduler {

struct SimOptions {
  uint32_t prefill = 8;
  uint32_t decode = 8;
  uint64_t local_cache_blocks = 4096;  // per prefill instance
  double rate_scale = 1.0;             // arrival times are divided by this
  uint64_t seed = 1;
  double kvcache_balancing_threshold = 1.5;
  RouterOptions router;
  double timeline_bucket_s = 10;  // width of the hit-ratio-over-time buckets
  // Called with the fraction of requests arrived, at most ~1000 times per run.
  std::function<void(double)> progress;
};

struct RequestOutcome {
  double arrival_s = 0;
  double ttft_s = 0;
  double tbt_s = -1;  // < 0: no decode tokens (output_length <= 1) or rejected
  bool rejected = false;
  RejectReason reason = RejectReason::kNone;
  uint32_t blocks = 0, local_blocks = 0, fetched_blocks = 0;
  uint32_t prefill = 0, decode = 0;  // the instances chosen (when admitted)
  int32_t fetch_source = -1;         // prefill instance the prefix was fetched from, -1 none
  double prefill_compute_s = 0;
  double predicted_ttft_s = 0;
};

struct HitBucket {
  double start_s = 0;
  uint64_t blocks = 0, hit_blocks = 0;
};

struct SimResult {
  std::string policy;
  std::vector<RequestOutcome> requests;  // in trace order
  std::vector<HitBucket> timeline;
  double makespan_s = 0;
};

// INVALID_ARGUMENT for zero instances, a non-positive rate_scale, options the policy refuses
// (MakePolicy), or a trace request the Router refuses (the message names its line index).
Result<SimResult> Simulate(const std::vector<TraceRequest>& trace, const CostModel& cost, PolicyKind policy,
                           const SimOptions& options);

}  // namespace kvstash::scheduler
