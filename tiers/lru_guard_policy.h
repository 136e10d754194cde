// LruGuardPolicy ("prefix-arc", the daemon's default): prefix-arc that never stays behind LRU.
//
// prefix-arc (tiers/prefix_arc_policy.h) beats LRU where once-touched blocks are rarely reused, and
// loses to it where they are the next turn of a conversation (docs/EVICTION.md, "Why prefix-arc
// lost to LRU"). No ranking found is right on both, so this policy measures, online, which order
// is winning on the references it sees and evicts in that order:
//  * two shadows (tiers/shadow_policy.h) replay every reference — each OnInsert, and each OnAccess
//    of a resident block — on resident sets of their own, one under prefix-arc's order and one
//    under leaf LRU ("prefix"), each held to the real tier's resident bytes;
//  * an exponentially decayed difference of their prefix hits (bytes), over a window of
//    kWindowFactor x the resident blocks (at least kMinWindow references), decides: once LRU's
//    lead is kConfidence standard deviations of what equal orders would give by chance, the real
//    policy evicts in leaf-LRU order; once ARC leads by as much, it returns to ARC's. It starts in
//    ARC's order. (A margin in proportion to the referenced bytes instead switched on leads of a
//    few blocks while ARC was still learning, and cost 0.004 on the shared trace.)
// Above an SSD tier (SetLowerTier) the shadows replay the tier pair — DRAM under their order, their
// victims demoted into a model of the SSD log (ShadowSsdLog), a reference found there a hit — so the
// guard compares the system's hits, not DRAM's; the fallback order is plain LRU (the "lru" order,
// parents included) rather than leaf LRU, the window counts the SSD's blocks too, and the guard
// starts in the fallback order. Measured on the tiered replay: ARC's and leaf LRU's DRAM gains do
// not carry to the system when the SSD is several times DRAM, LRU's order does; when the SSD is
// about DRAM's size ARC's gain does carry, and the guard switches to it (docs/EVICTION.md, "The
// tiered daemon").
// The real bookkeeping is one PrefixArcPolicy throughout (lists, ghosts and ARC's target keep
// adapting in every order), so a switch moves no block. ARC's and leaf LRU's orders evict only
// leaves, so chains leave from the tail; plain LRU (above an SSD only) may take a parent before its
// children, as the "lru" policy does. "Unlikely" advice leaves first in every order.
//
// Cost: each reference runs the real policy and both shadows (and, above an SSD, their SSD models):
// about 4x prefix-arc-unguarded's time without an SSD, twice that above one, and about 3x its
// bookkeeping memory (docs/EVICTION.md, "Overhead per operation"); no bytes are copied.
//
// Thread-safety: NOT thread-safe, like every EvictionPolicy.
#pragma once

#include <cstdint>
#include <optional>

#include "tiers/eviction_policy.h"
#include "tiers/prefix_arc_policy.h"
#include "tiers/shadow_policy.h"

namespace kvstash::tiers {

class LruGuardPolicy final : public EvictionPolicy {
 public:
  // The decision window, in references: kWindowFactor x resident blocks, at least kMinWindow.
  static constexpr double kWindowFactor = 4.0;
  static constexpr double kMinWindow = 1024.0;
  // The lead one order needs to take over, in standard deviations of a tie.
  static constexpr double kConfidence = 3.0;

  LruGuardPolicy();

  std::string_view name() const override { return "prefix-arc"; }
  void OnInsert(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size) override;
  void OnAccess(const BlockKey& key) override;
  void OnAdvise(const BlockKey& key, ReuseAdvice advice) override;
  void OnErase(const BlockKey& key) override { real_.OnErase(key); }
  std::optional<BlockKey> PickVictim(const std::function<bool(const BlockKey&)>& evictable) override {
    return real_.PickVictim(evictable);
  }
  size_t size() const override { return real_.size(); }
  // Restarts both shadows as tier pairs above `lower`, makes plain LRU the fallback order and
  // starts in it. REQUIRES: before the first OnInsert.
  void SetLowerTier(const LowerTier& lower) override;

  // The order the real policy evicts in now.
  PrefixArcPolicy::VictimOrder victim_order() const { return real_.victim_order(); }
  // Times the order changed.
  uint64_t switches() const { return switches_; }

 private:
  // Replays one reference on both shadows and updates the decision.
  void Observe(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size);

  PrefixArcPolicy real_;
  ShadowPolicy arc_;
  ShadowPolicy lru_;  // the fallback order's shadow
  PrefixArcPolicy::VictimOrder fallback_ = PrefixArcPolicy::VictimOrder::kLeafLru;
  uint64_t lower_bytes_ = 0;  // the SSD below, 0 without one
  double lru_lead_ = 0;      // decayed (LRU shadow's hit bytes - ARC shadow's hit bytes)
  double disagreed_sq_ = 0;  // decayed sum of bytes^2 over references where the shadows disagree
  uint64_t switches_ = 0;
};

}  // namespace kvstash::tiers
