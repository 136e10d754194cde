// local-cache-aware and global-cache-aware (Mooncake Algorithm 1).
#include "scheduler/policies.h"

namespace kvstash::scheduler {
namespace {

class LocalCacheAwarePolicy final : public Policy {
 public:
  std::string_view name() const override { return "local-cache-aware"; }
  PrefillPlan ChoosePrefill(const RouteRequest& req, const ClusterView& view,
                            std::span<const uint32_t> matches, const CostModel& cost) override {
    PrefillPlan best = LocalPlan(req, view, matches, cost, 0);
    for (uint32_t i = 1; i < view.prefill_count(); ++i) {
      PrefillPlan plan = LocalPlan(req, view, matches, cost, i);
      if (plan.ttft_s() < best.ttft_s()) best = plan;
    }
    return best;
  }
};

class GlobalCacheAwarePolicy final : public Policy {
 public:
  explicit GlobalCacheAwarePolicy(double threshold) : threshold_(threshold) {}
  std::string_view name() const override { return "global-cache-aware"; }
  PrefillPlan ChoosePrefill(const RouteRequest& req, const ClusterView& view,
                            std::span<const uint32_t> matches, const CostModel& cost) override {
    uint32_t holder = 0;
    for (uint32_t i = 1; i < view.prefill_count(); ++i) {
      if (matches[i] > matches[holder]) holder = i;
    }
    // The kvstash store is one more holder: the best source of the prefix is whoever holds the
    // longest part of it.
    const bool from_store = req.store_blocks > matches[holder];
    const uint32_t best_len = from_store ? req.store_blocks : matches[holder];
    const int32_t source = from_store ? PrefillPlan::kFromStore : int32_t(holder);
    PrefillPlan best;
    bool have = false;
    for (uint32_t i = 0; i < view.prefill_count(); ++i) {
      PrefillPlan plan = LocalPlan(req, view, matches, cost, i);
      if (best_len > threshold_ * double(matches[i])) {
        plan.fetch_blocks = best_len - matches[i];
        plan.fetch_source = source;
        plan.transfer_s = cost.TransferSeconds(plan.fetch_blocks);
        plan.prefill_s =
            cost.PrefillSeconds(req.input_tokens, cost.CachedTokens(req.input_tokens, best_len));
      }
      if (!have || plan.ttft_s() < best.ttft_s()) best = plan, have = true;
    }
    return best;
  }

 private:
  double threshold_;
};

}  // namespace

std::unique_ptr<Policy> NewLocalCacheAwarePolicy() {
  return std::make_unique<LocalCacheAwarePolicy>();
}
std::unique_ptr<Policy> NewGlobalCacheAwarePolicy(double threshold) {
  return std::make_unique<GlobalCacheAwarePolicy>(threshold);
}

}  // namespace kvstash::scheduler
