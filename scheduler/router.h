// Router: one routing decision = validate the request, compute every prefill instance's prefix
// match, let the policy pick the prefill plan, pick the decode instance (the policy's blind choice,
// or else the lowest predicted TBT), and admit or reject against the SLOs.
//
// Admission modes:
//   off        never reject (measures raw TTFT/TBT, as the paper's Figure 5 does)
//   current    reject when predicted TTFT > ttft_slo, or when the decode instance's TBT with its
//   load
//              *now* plus this request would exceed tbt_slo (plain early rejection)
//   predicted  as current, but the decode side is judged by its load predicted at the moment this
//              request's prefill completes (prediction-based early rejection, Mooncake §7.4), which
//              damps the oscillation that judging by the current load causes
// A rejection is a decision, not an error: Route returns OK with `reject` set; services map it to
// RESOURCE_EXHAUSTED (HTTP 429).
//
// Thread-safety: one thread at a time (the policy may hold state).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kvstash/result.h"
#include "scheduler/policy.h"

namespace kvstash::scheduler {

enum class Admission { kOff, kCurrent, kPredicted };
Result<Admission> ParseAdmission(const std::string& name);

enum class RejectReason { kNone, kTtftSlo, kTbtSlo };
std::string_view RejectReasonName(RejectReason reason);

struct RouterOptions {
  double ttft_slo_s = 30;
  double tbt_slo_s = 0.1;
  Admission admission = Admission::kPredicted;
  uint64_t max_input_tokens = 4'000'000;  // longer prompts are absurd input
  uint64_t max_output_tokens = 1'000'000;
};

struct RouteDecision {
  PrefillPlan plan;
  uint32_t decode = 0;
  double predicted_tbt_s = 0;
  RejectReason reject = RejectReason::kNone;
  bool rejected() const { return reject != RejectReason::kNone; }
};

class Router {
 public:
  Router(std::unique_ptr<Policy> policy, const CostModel& cost, RouterOptions options)
      : policy_(std::move(policy)), cost_(cost), options_(options) {}

  // INVALID_ARGUMENT for an empty chain, zero or absurd lengths, or a chain that does not cover the
  // prompt in blocks of cost.block_tokens (chain.size() must be ceil(input_tokens / block_tokens),
  // as in Mooncake traces, or floor(...) when the partial last block has no key, as with
  // PrefixHasher); FAILED_PRECONDITION when the view has no prefill or no decode instance.
  Result<RouteDecision> Route(const RouteRequest& req, const ClusterView& view);

  const Policy& policy() const { return *policy_; }
  const CostModel& cost() const { return cost_; }

 private:
  std::unique_ptr<Policy> policy_;
  CostModel cost_;
  RouterOptions options_;
  std::vector<uint32_t> matches_;
};

}  // namespace kvstash::scheduler
