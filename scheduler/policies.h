// Concrete policies (policy.h describes each). Internal to scheduler/; use MakePolicy.
//
// Thread-safety: as Policy.
#pragma once

#include <memory>

#include "scheduler/policy.h"

namespace kvstash::scheduler {

std::unique_ptr<Policy> NewRandomPolicy(uint64_t seed);
std::unique_ptr<Policy> NewRoundRobinPolicy();
std::unique_ptr<Policy> NewLoadBalancePolicy();
std::unique_ptr<Policy> NewLocalCacheAwarePolicy();
std::unique_ptr<Policy> NewGlobalCacheAwarePolicy(double kvcache_balancing_threshold);

}  // namespace kvstash::scheduler
