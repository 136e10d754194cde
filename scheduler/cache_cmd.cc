// kvstash-sim cache: replays a Mooncake-format trace against the real eviction policies of tiers/
// at one capacity (or a sweep of capacities) and prints each policy's token-level prefix hit ratio
// next to the references LRU, Belady's offline optimum and an infinite cache. With --ssd-blocks it
// replays the tiered daemon instead (DRAM under each policy above a FIFO SSD log,
// scheduler/tiered_cache_sim.h) and reports the system's hit ratio and the share served from DRAM.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/trace.h"
#include "scheduler/cache_sim.h"
#include "scheduler/sim_commands.h"
#include "scheduler/tiered_cache_sim.h"
#include "tiers/dram_tier.h"
#include "tiers/eviction_policy.h"

namespace kvstash::scheduler {
namespace {

struct CacheOptions {
  std::string trace, policy = "all", advice = "output-length";
  uint64_t capacity_blocks = 0;
  uint64_t ssd_blocks = 0;  // 0: DRAM only
  uint64_t ssd_segment_blocks = 0;
  std::vector<uint64_t> sweep;
  bool json = false;
  bool time = false;
};

struct Row {
  std::string policy;
  double hit_ratio = 0;
  bool is_default = false;
  double dram_hit_ratio = -1;  // tiered rows: the part served from DRAM; -1 otherwise
  double ns_per_reference = -1;  // --time, policy rows: replay wall time / block references
};

// Runs one replay and, with `time`, its wall time per block reference (every hash id of every
// request is one reference: one OnAccess or OnInsert, plus the evictions it causes).
Result<CacheSimResult> TimedReplay(const std::vector<TraceRequest>& trace, uint64_t capacity,
                                   tiers::EvictionPolicyKind policy, EngineAdvice advice, double* ns_per_reference) {
  uint64_t references = 0;
  for (const TraceRequest& r : trace) references += r.hash_ids.size();
  const auto start = std::chrono::steady_clock::now();
  Result<CacheSimResult> r = ReplayPolicy(trace, capacity, policy, advice);
  const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
  *ns_per_reference = references == 0 ? 0.0 : took.count() / static_cast<double>(references);
  return r;
}

int Fail(const std::string& msg) {
  std::fprintf(stderr, "kvstash-sim: cache: %s\n", msg.c_str());
  return 1;
}

// Policies first (the daemon's default marked; with engine advice, the default policy once more
// as "<name>+advice", fed the engine's advice), then the references lru, belady, infinite. "lru"
// is both a policy and a reference: it is listed once, from the real tiers/ object.
Result<std::vector<Row>> RunAt(const std::vector<TraceRequest>& trace, uint64_t capacity,
                               const std::vector<tiers::EvictionPolicyKind>& policies, EngineAdvice advice) {
  using tiers::EvictionPolicyKind;
  const EvictionPolicyKind default_policy = tiers::DramTierOptions{}.eviction_policy;
  std::vector<Row> rows;
  for (const EvictionPolicyKind policy : policies) {
    if (policy == EvictionPolicyKind::kLru) continue;
    const std::string name(Name(policy));
    double ns = 0;
    KVSTASH_ASSIGN_OR_RETURN(CacheSimResult r, TimedReplay(trace, capacity, policy, EngineAdvice::kNone, &ns));
    rows.push_back({name, r.hit_ratio(), policy == default_policy, -1, ns});
    if (advice != EngineAdvice::kNone && policy == default_policy) {
      KVSTASH_ASSIGN_OR_RETURN(CacheSimResult advised, TimedReplay(trace, capacity, policy, advice, &ns));
      rows.push_back({name + "+advice", advised.hit_ratio(), false, -1, ns});
    }
  }
  double lru_ns = 0;
  KVSTASH_ASSIGN_OR_RETURN(CacheSimResult lru,
                           TimedReplay(trace, capacity, EvictionPolicyKind::kLru, EngineAdvice::kNone, &lru_ns));
  rows.push_back({"lru", lru.hit_ratio(), default_policy == EvictionPolicyKind::kLru, -1, lru_ns});
  KVSTASH_ASSIGN_OR_RETURN(CacheSimResult belady, ReplayBelady(trace, capacity));
  rows.push_back({"belady", belady.hit_ratio(), false});
  rows.push_back({"infinite", ReplayInfinite(trace).hit_ratio(), false});
  return rows;
}

// Tiered (--ssd-blocks): each policy drives DRAM above the SSD log; "lru" is
// the same system with LRU in DRAM; the references are one LRU cache of DRAM + SSD blocks
// ("lru-over-both") and an infinite cache.
Result<std::vector<Row>> RunTieredAt(const std::vector<TraceRequest>& trace, uint64_t capacity,
                                     const std::vector<tiers::EvictionPolicyKind>& policies, EngineAdvice advice,
                                     const CacheOptions& o) {
  using tiers::EvictionPolicyKind;
  const EvictionPolicyKind default_policy = tiers::DramTierOptions{}.eviction_policy;
  TieredSimOptions tiered;
  tiered.dram_blocks = capacity;
  tiered.ssd_blocks = o.ssd_blocks;
  tiered.segment_blocks = o.ssd_segment_blocks;
  std::vector<Row> rows;
  uint64_t references = 0;
  for (const TraceRequest& r : trace) references += r.hash_ids.size();
  const auto add = [&](const std::string& label, EvictionPolicyKind policy, EngineAdvice a) -> Status {
    const auto start = std::chrono::steady_clock::now();
    KVSTASH_ASSIGN_OR_RETURN(TieredSimResult r, ReplayTiered(trace, tiered, policy, a));
    const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
    const double dram = r.system.input_tokens == 0 ? 0.0 : double(r.dram_hit_tokens) / double(r.system.input_tokens);
    rows.push_back({label, r.system.hit_ratio(), policy == default_policy && a == EngineAdvice::kNone, dram,
                    references == 0 ? 0.0 : took.count() / static_cast<double>(references)});
    return Status::Ok();
  };
  for (const EvictionPolicyKind policy : policies) {
    if (policy == EvictionPolicyKind::kLru) continue;
    const std::string name(Name(policy));
    KVSTASH_RETURN_IF_ERROR(add(name, policy, EngineAdvice::kNone));
    if (advice != EngineAdvice::kNone && policy == default_policy) {
      KVSTASH_RETURN_IF_ERROR(add(name + "+advice", policy, advice));
    }
  }
  KVSTASH_RETURN_IF_ERROR(add("lru", EvictionPolicyKind::kLru, EngineAdvice::kNone));
  KVSTASH_ASSIGN_OR_RETURN(CacheSimResult both, ReplayPolicy(trace, capacity + o.ssd_blocks, EvictionPolicyKind::kLru));
  rows.push_back({"lru-over-both", both.hit_ratio(), false});
  rows.push_back({"infinite", ReplayInfinite(trace).hit_ratio(), false});
  return rows;
}

nlohmann::json RowsJson(const std::vector<Row>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const Row& r : rows) {
    nlohmann::json row = {{"policy", r.policy}, {"hit_ratio", r.hit_ratio}, {"default", r.is_default}};
    if (r.dram_hit_ratio >= 0) row["dram_hit_ratio"] = r.dram_hit_ratio;
    if (r.ns_per_reference >= 0) row["ns_per_reference"] = r.ns_per_reference;
    out.push_back(row);
  }
  return out;
}

void PrintTable(const std::vector<Row>& rows, uint64_t capacity, uint64_t ssd_blocks, bool time) {
  double lru = 0;
  for (const Row& r : rows) {
    if (r.policy == "lru") lru = r.hit_ratio;
  }
  std::printf("capacity %llu blocks (%llu tokens)", static_cast<unsigned long long>(capacity),
              static_cast<unsigned long long>(capacity * kTraceBlockTokens));
  if (ssd_blocks > 0) std::printf(" of DRAM above %llu SSD blocks", static_cast<unsigned long long>(ssd_blocks));
  std::printf("\n  %-22s %9s %9s%s%s\n", "policy", "hit_ratio", "vs_lru", ssd_blocks > 0 ? "  from_dram" : "",
              time ? "  ns/ref" : "");
  for (const Row& r : rows) {
    std::printf("  %-22s %9.4f %+9.4f", r.policy.c_str(), r.hit_ratio, r.hit_ratio - lru);
    if (r.dram_hit_ratio >= 0) std::printf("  %9.4f", r.dram_hit_ratio);
    if (time && r.ns_per_reference >= 0) std::printf("  %6.0f", r.ns_per_reference);
    std::printf("%s\n", r.is_default ? "  (default)" : "");
  }
}

int RunCache(const CacheOptions& o) {
  // The edge: --policy's name becomes the policy's kind here.
  std::vector<tiers::EvictionPolicyKind> policies;
  if (o.policy == "all") {
    for (const auto& n : tiers::kEvictionPolicyNames) policies.push_back(n.value);
  } else {
    Result<tiers::EvictionPolicyKind> policy = tiers::ParseEvictionPolicy(o.policy);
    if (!policy.ok()) return Fail(policy.status().ToString());
    policies = {*policy};
  }
  EngineAdvice advice = EngineAdvice::kNone;
  if (o.advice == "output-length") {
    advice = EngineAdvice::kOutputLength;
  } else if (o.advice != "none") {
    return Fail("--advice must be output-length or none, not " + o.advice);
  }
  std::vector<uint64_t> capacities = o.sweep;
  if (capacities.empty()) {
    if (o.capacity_blocks == 0) return Fail("--capacity-blocks or --sweep is required");
    capacities = {o.capacity_blocks};
  }
  auto trace = LoadTrace(o.trace);
  if (!trace.ok()) return Fail(trace.status().ToString());

  nlohmann::json sweep = nlohmann::json::array();
  for (uint64_t capacity : capacities) {
    auto rows = o.ssd_blocks > 0 ? RunTieredAt(*trace, capacity, policies, advice, o)
                                 : RunAt(*trace, capacity, policies, advice);
    if (!rows.ok()) return Fail(rows.status().ToString());
    if (!o.time) {
      for (Row& r : *rows) r.ns_per_reference = -1;  // wall times only when asked: output stays deterministic
    }
    if (!o.json) {
      PrintTable(*rows, capacity, o.ssd_blocks, o.time);
    } else if (o.sweep.empty()) {
      nlohmann::json doc = {
          {"trace", o.trace}, {"capacity_blocks", capacity}, {"rows", RowsJson(*rows)}};
      std::cout << doc.dump(2) << "\n";
    } else {
      sweep.push_back({{"capacity_blocks", capacity}, {"rows", RowsJson(*rows)}});
    }
  }
  if (o.json && !o.sweep.empty()) {
    nlohmann::json doc = {{"trace", o.trace}, {"sweep", sweep}};
    std::cout << doc.dump(2) << "\n";
  }
  return 0;
}

}  // namespace

void RegisterCacheCommand(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<CacheOptions>();
  CLI::App* cmd = app.add_subcommand(
      "cache", "token-level prefix hit ratio of eviction policies vs LRU, Belady and infinite");
  cmd->add_option("--trace", o->trace,
                  "trace file (JSON Lines: timestamp, input_length, output_length, hash_ids)")
      ->required();
  cmd->add_option("--capacity-blocks", o->capacity_blocks, "cache capacity in 512-token blocks")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--policy", o->policy, "lru|prefix|prefix-arc|prefix-arc-unguarded|all")->capture_default_str();
  cmd->add_option("--ssd-blocks", o->ssd_blocks,
                  "replay the tiered daemon: --capacity-blocks (or --sweep) of DRAM above this many SSD "
                  "blocks; rows are the system's hit ratio (docs/EVICTION.md)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--ssd-segment-blocks", o->ssd_segment_blocks,
                  "blocks per SSD segment (default: --ssd-blocks / 64, as 16 GiB of 256 MiB segments)");
  cmd->add_option("--advice", o->advice,
                  "how the simulated engine advises its puts: output-length (adds the row "
                  "<default policy>+advice, docs/EVICTION.md) or none")
      ->capture_default_str();
  cmd->add_option("--sweep", o->sweep,
                  "capacities to replay instead of --capacity-blocks, e.g. --sweep 1000,5859,50000")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--time", o->time,
                "print each policy's replay wall time per block reference (ns/ref; LRU's is the "
                "baseline in the same run)");
  cmd->add_flag("--json", o->json,
                "print JSON: {trace, capacity_blocks, rows[{policy, hit_ratio, default, "
                "dram_hit_ratio (tiered)}]}, or "
                "{trace, sweep[{capacity_blocks, rows}]} with --sweep");
  cmd->callback([o, exit_code] { *exit_code = RunCache(*o); });
}

}  // namespace kvstash::scheduler
