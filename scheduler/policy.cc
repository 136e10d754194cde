#include "scheduler/policy.h"

#include "scheduler/policies.h"

namespace kvstash::scheduler {

std::string_view Name(PolicyKind kind) { return settings::EnumToName(std::span(kPolicyNames), kind); }

Result<PolicyKind> ParsePolicy(std::string_view name) {
  Result<PolicyKind> kind = settings::ParseEnum<PolicyKind>(kPolicyNames, name);
  if (!kind.ok()) return InvalidArgument("policy " + kind.status().message());
  return kind;
}

Result<std::unique_ptr<Policy>> MakePolicy(PolicyKind kind, const PolicyOptions& options) {
  switch (kind) {
    case PolicyKind::kRandom: return NewRandomPolicy(options.seed);
    case PolicyKind::kRoundRobin: return NewRoundRobinPolicy();
    case PolicyKind::kLoadBalance: return NewLoadBalancePolicy();
    case PolicyKind::kLocalCacheAware: return NewLocalCacheAwarePolicy();
    case PolicyKind::kGlobalCacheAware: break;
  }
  if (!(options.kvcache_balancing_threshold >= 1.0)) {
    return InvalidArgument("kvcache_balancing_threshold must be >= 1 (a ratio of prefix lengths)");
  }
  return NewGlobalCacheAwarePolicy(options.kvcache_balancing_threshold);
}

PrefillPlan LocalPlan(const RouteRequest& req, const ClusterView& view,
                      std::span<const uint32_t> matches, const CostModel& cost, uint32_t i) {
  PrefillPlan plan;
  plan.prefill = i;
  plan.local_blocks = matches[i];
  plan.queue_s = view.PrefillQueueSeconds(i, req.now_s);
  plan.prefill_s =
      cost.PrefillSeconds(req.input_tokens, cost.CachedTokens(req.input_tokens, matches[i]));
  return plan;
}

}  // namespace kvstash::scheduler
