#include "scheduler/policy.h"

#include "scheduler/policies.h"

namespace kvstash::scheduler {

const std::vector<std::string>& PolicyNames() {
  static const std::vector<std::string> kNames = {"random", "round-robin", "load-balance",
                                                  "local-cache-aware", "global-cache-aware"};
  return kNames;
}

Result<std::unique_ptr<Policy>> MakePolicy(const std::string& name, const PolicyOptions& options) {
  if (name == "random") return NewRandomPolicy(options.seed);
  if (name == "round-robin") return NewRoundRobinPolicy();
  if (name == "load-balance") return NewLoadBalancePolicy();
  if (name == "local-cache-aware") return NewLocalCacheAwarePolicy();
  if (name == "global-cache-aware") {
    if (!(options.kvcache_balancing_threshold >= 1.0)) {
      return InvalidArgument(
          "kvcache_balancing_threshold must be >= 1 (a ratio of prefix lengths)");
    }
    return NewGlobalCacheAwarePolicy(options.kvcache_balancing_threshold);
  }
  std::string known;
  for (const auto& n : PolicyNames()) known += (known.empty() ? "" : ", ") + n;
  return InvalidArgument("unknown policy '" + name + "' (known: " + known + ")");
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
