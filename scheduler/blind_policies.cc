// random, round-robin and load-balance: policies that ignore where prefixes are cached.
#include "scheduler/policies.h"

namespace kvstash::scheduler {
namespace {

class RandomPolicy final : public Policy {
 public:
  explicit RandomPolicy(uint64_t seed) : rng_(seed) {}
  std::string_view name() const override { return "random"; }
  PrefillPlan ChoosePrefill(const RouteRequest& req, const ClusterView& view,
                            std::span<const uint32_t> matches, const CostModel& cost) override {
    std::uniform_int_distribution<uint32_t> pick(0, uint32_t(view.prefill_count() - 1));
    return LocalPlan(req, view, matches, cost, pick(rng_));
  }
  std::optional<uint32_t> ChooseDecode(const ClusterView& view) override {
    std::uniform_int_distribution<uint32_t> pick(0, uint32_t(view.decode_count() - 1));
    return pick(rng_);
  }

 private:
  std::mt19937_64 rng_;
};

class RoundRobinPolicy final : public Policy {
 public:
  std::string_view name() const override { return "round-robin"; }
  PrefillPlan ChoosePrefill(const RouteRequest& req, const ClusterView& view,
                            std::span<const uint32_t> matches, const CostModel& cost) override {
    return LocalPlan(req, view, matches, cost, uint32_t(next_prefill_++ % view.prefill_count()));
  }
  std::optional<uint32_t> ChooseDecode(const ClusterView& view) override {
    return uint32_t(next_decode_++ % view.decode_count());
  }

 private:
  uint64_t next_prefill_ = 0, next_decode_ = 0;
};

class LoadBalancePolicy final : public Policy {
 public:
  std::string_view name() const override { return "load-balance"; }
  PrefillPlan ChoosePrefill(const RouteRequest& req, const ClusterView& view,
                            std::span<const uint32_t> matches, const CostModel& cost) override {
    uint32_t best = 0;
    double best_queue = view.PrefillQueueSeconds(0, req.now_s);
    for (uint32_t i = 1; i < view.prefill_count(); ++i) {
      const double q = view.PrefillQueueSeconds(i, req.now_s);
      if (q < best_queue) best = i, best_queue = q;
    }
    return LocalPlan(req, view, matches, cost, best);
  }
};

}  // namespace

std::unique_ptr<Policy> NewRandomPolicy(uint64_t seed) {
  return std::make_unique<RandomPolicy>(seed);
}
std::unique_ptr<Policy> NewRoundRobinPolicy() { return std::make_unique<RoundRobinPolicy>(); }
std::unique_ptr<Policy> NewLoadBalancePolicy() { return std::make_unique<LoadBalancePolicy>(); }

}  // namespace kvstash::scheduler
