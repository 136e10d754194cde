#include "scheduler/cache_sim.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <queue>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "kvstash/block_key.h"
#include "tiers/eviction_policy.h"

namespace kvstash::scheduler {
namespace {

// Trace hash ids become block keys in their own high half, so id 0 is not the all-zero key.
constexpr uint64_t kKeyTag = 0x6b767374617368ULL;  // "kvstash"

BlockKey KeyOf(uint64_t hash_id) { return BlockKey::FromParts(kKeyTag, hash_id); }

uint64_t Score(const TraceRequest& r, size_t prefix_blocks) {
  return std::min<uint64_t>(prefix_blocks * kTraceBlockTokens, r.input_length);
}

template <typename Contains>
size_t PrefixBlocks(const TraceRequest& r, const Contains& contains) {
  size_t n = 0;
  while (n < r.hash_ids.size() && contains(r.hash_ids[n])) ++n;
  return n;
}

}  // namespace

std::optional<ReuseAdvice> OutputLengthAdvice(const TraceRequest& r, bool new_context) {
  if (!new_context) return std::nullopt;
  if (r.output_length <= kLikelyMaxOutput) return ReuseAdvice::kLikely;
  if (r.output_length > kUnlikelyMinOutput) return ReuseAdvice::kUnlikely;
  return std::nullopt;
}

Result<CacheSimResult> ReplayPolicy(const std::vector<TraceRequest>& trace, uint64_t capacity_blocks,
                                    tiers::EvictionPolicyKind policy_kind, EngineAdvice engine_advice) {
  if (capacity_blocks == 0) return InvalidArgument("capacity must be at least one block");
  std::unique_ptr<tiers::EvictionPolicy> policy = tiers::MakeEvictionPolicy(policy_kind);
  std::unordered_set<BlockKey, BlockKeyHash> resident;
  CacheSimResult out;
  std::unordered_set<uint64_t> named;  // hash ids of earlier requests, for new_context
  const auto all = [](const BlockKey&) { return true; };
  for (const TraceRequest& r : trace) {
    const size_t hit = PrefixBlocks(r, [&](uint64_t id) { return resident.contains(KeyOf(id)); });
    std::optional<ReuseAdvice> advice;
    if (engine_advice == EngineAdvice::kOutputLength && !r.hash_ids.empty()) {
      advice = OutputLengthAdvice(r, !named.contains(r.hash_ids.front()));
      named.insert(r.hash_ids.begin(), r.hash_ids.end());
    }
    out.hit_tokens += Score(r, hit);
    out.input_tokens += r.input_length;
    std::optional<BlockKey> parent;
    for (size_t i = 0; i < r.hash_ids.size(); ++i) {
      const BlockKey key = KeyOf(r.hash_ids[i]);
      if (resident.contains(key)) {
        policy->OnAccess(key);
      } else {
        bool room = true;
        while (resident.size() >= capacity_blocks) {
          std::optional<BlockKey> victim = policy->PickVictim(all);
          if (!victim || !resident.contains(*victim)) {
            room = false;
            break;
          }
          resident.erase(*victim);
          policy->OnErase(*victim);
          ++out.evictions;
        }
        if (room) {
          resident.insert(key);
          policy->OnInsert(key, parent, 1);
          if (advice) policy->OnAdvise(key, *advice);
        }
      }
      parent = key;
    }
  }
  return out;
}

Result<CacheSimResult> ReplayBelady(const std::vector<TraceRequest>& trace, uint64_t capacity_blocks) {
  if (capacity_blocks == 0) return InvalidArgument("capacity must be at least one block");
  constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
  // next_use[t][i]: index of the next request after t naming trace[t].hash_ids[i].
  std::vector<std::vector<uint64_t>> next_use(trace.size());
  {
    std::unordered_map<uint64_t, uint64_t> next;
    for (size_t t = trace.size(); t-- > 0;) {
      const auto& ids = trace[t].hash_ids;
      next_use[t].resize(ids.size());
      for (size_t i = 0; i < ids.size(); ++i) {
        auto it = next.find(ids[i]);
        next_use[t][i] = it == next.end() ? kNever : it->second;
      }
      for (uint64_t id : ids) next[id] = t;
    }
  }
  // resident: id -> its current next use. heap: (next use, depth, id), largest first; stale
  // entries (next use changed) are skipped when popped.
  std::unordered_map<uint64_t, uint64_t> resident;
  std::priority_queue<std::tuple<uint64_t, size_t, uint64_t>> heap;
  CacheSimResult out;
  for (size_t t = 0; t < trace.size(); ++t) {
    const TraceRequest& r = trace[t];
    const size_t hit = PrefixBlocks(r, [&](uint64_t id) { return resident.contains(id); });
    out.hit_tokens += Score(r, hit);
    out.input_tokens += r.input_length;
    for (size_t i = 0; i < r.hash_ids.size(); ++i) {
      resident[r.hash_ids[i]] = next_use[t][i];
      heap.emplace(next_use[t][i], i, r.hash_ids[i]);
    }
    while (resident.size() > capacity_blocks) {
      const auto [use, depth, id] = heap.top();
      heap.pop();
      auto it = resident.find(id);
      if (it == resident.end() || it->second != use) continue;
      resident.erase(it);
      ++out.evictions;
    }
  }
  return out;
}

CacheSimResult ReplayInfinite(const std::vector<TraceRequest>& trace) {
  std::unordered_set<uint64_t> seen;
  CacheSimResult out;
  for (const TraceRequest& r : trace) {
    out.hit_tokens += Score(r, PrefixBlocks(r, [&](uint64_t id) { return seen.contains(id); }));
    out.input_tokens += r.input_length;
    seen.insert(r.hash_ids.begin(), r.hash_ids.end());
  }
  return out;
}

}  // namespace kvstash::scheduler
