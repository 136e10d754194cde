// Policy: how a request's prefill instance (and, for the blind policies, its decode instance) is
// chosen. One interface for the simulator and the live conductor; Router (router.h) wraps a policy
// with validation, decode selection by predicted TBT and SLO admission.
//
//   random               uniform prefill and decode (seeded)
//   round-robin          next prefill, next decode
//   load-balance         least queued prefill work
//   local-cache-aware    min over i of queue_i + prefill(n, own prefix_i)
//   global-cache-aware   Mooncake Algorithm 1: min over i of transfer + queue_i + prefill(n,
//   prefix),
//                        where the instance pulls the best holder's longer prefix when
//                        best_prefix > kvcache_balancing_threshold · own_prefix (ratio, as in the
//                        paper; it then becomes a replica of those blocks)
//
// Thread-safety: a policy object is used by one thread at a time (it may keep a counter or RNG).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/enum_names.h"
#include "kvstash/result.h"
#include "scheduler/cluster_view.h"
#include "scheduler/cost_model.h"

namespace kvstash::scheduler {

struct RouteRequest {
  uint64_t id = 0;
  double now_s = 0;
  uint64_t input_tokens = 0;
  uint64_t output_tokens = 0;      // expected generated tokens
  std::span<const BlockId> chain;  // one id per (possibly partial) block of the prompt
  // Leading blocks of the chain held by the shared kvstash store (the global pool of kvstashd
  // daemons), as its Lookup answered; 0 when no store is attached or it holds none.
  uint32_t store_blocks = 0;
};

// A policy's prefill plan: where to prefill and which prefix it will reuse.
struct PrefillPlan {
  uint32_t prefill = 0;
  uint32_t local_blocks = 0;  // leading blocks reused from the instance's own cache
  uint32_t fetch_blocks = 0;  // next blocks pulled from fetch_source over the network
  int32_t fetch_source = -1;  // prefill instance holding them; -1 when nothing is fetched,
                              // kFromStore when they come from the kvstash store
  static constexpr int32_t kFromStore = -2;
  double transfer_s = 0, queue_s = 0, prefill_s = 0;
  double ttft_s() const { return transfer_s + queue_s + prefill_s; }
};

struct PolicyOptions {
  uint64_t seed = 1;
  double kvcache_balancing_threshold = 1.5;
};

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string_view name() const = 0;
  // REQUIRES: view has >= 1 prefill instance; matches[i] is prefill instance i's prefix match.
  virtual PrefillPlan ChoosePrefill(const RouteRequest& req, const ClusterView& view,
                                    std::span<const uint32_t> matches, const CostModel& cost) = 0;
  // A decode instance chosen without looking at load, or nullopt to let Router pick the one with
  // the lowest predicted TBT. REQUIRES: view has >= 1 decode instance.
  virtual std::optional<uint32_t> ChooseDecode(const ClusterView& view) { return std::nullopt; }
};

// The policies MakePolicy builds. Options and callers hold this kind; its name is parsed only at the
// edges (the conductor's --policy, kvstash-sim replay and kvstash-replay's --policy) and printed
// with Name() (Policy::name() of the policy built says the same).
enum class PolicyKind { kRandom, kRoundRobin, kLoadBalance, kLocalCacheAware, kGlobalCacheAware };
// Every policy and its name, in the order reports list them.
inline constexpr settings::EnumName<PolicyKind> kPolicyNames[] = {
    {PolicyKind::kRandom, "random"},
    {PolicyKind::kRoundRobin, "round-robin"},
    {PolicyKind::kLoadBalance, "load-balance"},
    {PolicyKind::kLocalCacheAware, "local-cache-aware"},
    {PolicyKind::kGlobalCacheAware, "global-cache-aware"}};
std::string_view Name(PolicyKind kind);
// A policy's name -> its kind; INVALID_ARGUMENT "policy must be random, round-robin, load-balance,
// local-cache-aware or global-cache-aware, not '<name>'" otherwise.
Result<PolicyKind> ParsePolicy(std::string_view name);
// INVALID_ARGUMENT for kGlobalCacheAware with a kvcache_balancing_threshold below 1.
Result<std::unique_ptr<Policy>> MakePolicy(PolicyKind kind, const PolicyOptions& options);

// The plan for prefilling on instance i reusing only its own prefix (no fetch).
PrefillPlan LocalPlan(const RouteRequest& req, const ClusterView& view,
                      std::span<const uint32_t> matches, const CostModel& cost, uint32_t i);

}  // namespace kvstash::scheduler
