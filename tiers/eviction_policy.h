// EvictionPolicy: decides which committed block leaves a tier next. Policies are pure bookkeeping
// over keys — they never touch bytes — so the same objects drive the live daemon and the trace
// simulator.
//
// Thread-safety: NOT thread-safe. The owning tier serialises every call under its policy mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "common/enum_names.h"
#include "kvstash/block_key.h"
#include "kvstash/result.h"
#include "kvstash/reuse_advice.h"

namespace kvstash::tiers {

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;

  virtual std::string_view name() const = 0;

  // A block became resident. `parent` is the previous block of its chain when known (it may or
  // may not be resident itself).
  virtual void OnInsert(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size) = 0;
  // A resident block was read or looked up.
  virtual void OnAccess(const BlockKey& key) = 0;
  // A resident block left the tier (evicted or removed). Unknown keys are ignored.
  virtual void OnErase(const BlockKey& key) = 0;
  // The engine's advice about a resident block (kvstash/reuse_advice.h). Unknown keys are ignored;
  // so is all advice in policies that rank by recency alone ("lru", "prefix").
  virtual void OnAdvise(const BlockKey& /*key*/, ReuseAdvice /*advice*/) {}

  // The tier below this one (the SSD log of tiers/ssd_tier.h, which takes this tier's victims),
  // for policies that weigh what their victims become there. Ignored by all but "prefix-arc".
  // REQUIRES: called before the first OnInsert (a later call restarts what the policy learned
  // about the lower tier).
  struct LowerTier {
    uint64_t capacity_bytes = 0;
    uint64_t segment_bytes = 0;        // reclaimed whole, oldest first
    uint32_t reinsert_min_hits = 1;    // read this often since written: re-appended on reclaim
    double reinsert_max_fraction = 0.5;  // of a segment, per reclaim
  };
  virtual void SetLowerTier(const LowerTier& /*lower*/) {}

  // The next block to evict among those for which `evictable(key)` is true, or nullopt when none
  // is. Does not erase it: the tier calls OnErase once it has actually removed the block.
  virtual std::optional<BlockKey> PickVictim(const std::function<bool(const BlockKey&)>& evictable) = 0;

  // Number of keys the policy tracks.
  virtual size_t size() const = 0;
};

// The policies MakeEvictionPolicy builds. Options hold this kind; its name is parsed only at the
// edges (the daemon's settings, kvstash-sim's command line) and printed with Name().
enum class EvictionPolicyKind {
  kLru,                 // "lru": least recently inserted-or-accessed first
  kPrefix,              // "prefix": LRU among the leaves of the resident prefix forest
  kPrefixArc,           // "prefix-arc": leaf ARC guarded by leaf LRU; the daemon's default
  kPrefixArcUnguarded,  // "prefix-arc-unguarded": leaf ARC alone; for kvstash-sim cache and tests
};
// Every policy and its name, in a stable order (kvstash-sim cache --policy all runs them in it).
// The daemon's configuration offers the first three (server/daemon_config.h).
inline constexpr settings::EnumName<EvictionPolicyKind> kEvictionPolicyNames[] = {
    {EvictionPolicyKind::kLru, "lru"},
    {EvictionPolicyKind::kPrefix, "prefix"},
    {EvictionPolicyKind::kPrefixArc, "prefix-arc"},
    {EvictionPolicyKind::kPrefixArcUnguarded, "prefix-arc-unguarded"}};
// The name of `kind`, as EvictionPolicy::name() of the policy it builds says it.
std::string_view Name(EvictionPolicyKind kind);
// "lru", "prefix", "prefix-arc" or "prefix-arc-unguarded" -> its kind; INVALID_ARGUMENT
// "eviction policy must be lru, prefix, prefix-arc or prefix-arc-unguarded, not '<name>'" otherwise.
Result<EvictionPolicyKind> ParseEvictionPolicy(std::string_view name);

// "lru": least recently inserted-or-accessed first.
std::unique_ptr<EvictionPolicy> MakeLruPolicy();
// "prefix": LRU among blocks with no resident child, so a chain is evicted from its tail and a
// child is never left without its parent (docs/ARCHITECTURE.md §4).
std::unique_ptr<EvictionPolicy> MakePrefixAwarePolicy();
// "prefix-arc-unguarded": ARC (recency list + frequency list, adapted by ghost hits) restricted to
// the leaves of the resident prefix forest, so it keeps prefix's guarantee and resists one-touch
// blocks (docs/EVICTION.md). Takes reuse advice: "likely" ranks a not-yet-reused block as reused,
// "unlikely" makes it leave before any unadvised block. Loses to LRU on multi-turn traces.
std::unique_ptr<EvictionPolicy> MakeUnguardedPrefixArcPolicy();
// "prefix-arc": the same ARC, guarded by shadow replays of itself and of leaf LRU: it evicts in
// leaf-LRU order while that order is measured to be winning (tiers/lru_guard_policy.h). The
// daemon's default.
std::unique_ptr<EvictionPolicy> MakePrefixArcPolicy();
// The policy of `kind` (one of the four above), empty.
std::unique_ptr<EvictionPolicy> MakeEvictionPolicy(EvictionPolicyKind kind);

}  // namespace kvstash::tiers
