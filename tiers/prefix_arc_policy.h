// PrefixArcPolicy: ARC over the leaves of the resident prefix forest (tiers/prefix_arc_policy.cc
// says how and why). Declared here, not only behind MakePrefixArcPolicy, for the one user that
// needs more than EvictionPolicy: the LRU guard (tiers/lru_guard_policy.h) switches its victim
// order and reads a resident block's parent and size.
//
// Thread-safety: NOT thread-safe, like every EvictionPolicy.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "tiers/eviction_policy.h"
#include "tiers/policy_key_hash.h"

namespace kvstash::tiers {

class PrefixArcPolicy final : public EvictionPolicy {
 public:
  // Which block PickVictim takes. kArc: ARC's choice (cold list, then T1 or T2 by the target p).
  // kLeafLru: the cold list, then the least recently used leaf of T1 and T2 together — the
  // "prefix" policy's order over the same blocks. kLru: the least recently used block, leaf or
  // not — the "lru" policy's order (REQUIRES: TrackAllBlocks() before the first OnInsert). The
  // bookkeeping (lists, ghosts, p) is the same in all, so the order can change between any two
  // calls.
  enum class VictimOrder { kArc, kLeafLru, kLru };

  std::string_view name() const override { return "prefix-arc-unguarded"; }
  void OnInsert(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size) override;
  void OnAccess(const BlockKey& key) override;
  void OnAdvise(const BlockKey& key, ReuseAdvice advice) override;
  void OnErase(const BlockKey& key) override;
  std::optional<BlockKey> PickVictim(const std::function<bool(const BlockKey&)>& evictable) override;
  size_t size() const override { return nodes_.size(); }

  void set_victim_order(VictimOrder order) { order_ = order; }
  // Keeps every resident block in recency order too (one more ordered set), for kLru.
  void TrackAllBlocks() { track_all_ = true; }
  VictimOrder victim_order() const { return order_; }
  // A resident block's kept parent link and size; nullopt for a key that is not resident.
  struct Resident {
    std::optional<BlockKey> parent;
    uint64_t size = 0;
  };
  std::optional<Resident> Find(const BlockKey& key) const;
  // Sum of the sizes given to OnInsert of the resident blocks.
  uint64_t resident_bytes() const { return bytes_; }

 private:
  enum List : int { kT1 = 0, kT2 = 1, kCold = 2 };  // kT1/kT2 index the ghost lists too (B1/B2)
  struct Node {
    std::optional<BlockKey> parent;
    uint64_t tick = 0;
    uint64_t children = 0;  // resident children
    uint64_t size = 0;
    List list = kT1;        // kT1, kT2 or kCold
    bool accessed = false;  // the latest call on this key was OnAccess, not OnInsert
  };
  struct Ghosts {
    std::list<BlockKey> fifo;  // front = oldest
    std::unordered_map<BlockKey, std::list<BlockKey>::iterator, PolicyKeyHash, PolicyKeyEq> index;
  };
  using Leaves = std::set<std::pair<uint64_t, BlockKey>>;

  bool StartsGhostRun(const std::optional<BlockKey>& parent) const;
  void Move(const BlockKey& key, Node& node, List to);
  double Ratio(List num, List den) const;
  bool ForgetGhost(List list, const BlockKey& key);
  void RememberGhost(List list, const BlockKey& key);
  std::optional<BlockKey> ArcVictim(const std::function<bool(const BlockKey&)>& evictable) const;
  std::optional<BlockKey> LeafLruVictim(const std::function<bool(const BlockKey&)>& evictable) const;
  std::optional<BlockKey> LruVictim(const std::function<bool(const BlockKey&)>& evictable) const;

  VictimOrder order_ = VictimOrder::kArc;
  bool track_all_ = false;
  Leaves all_;  // (tick, key) of every resident block when track_all_, coldest first
  uint64_t tick_ = 0;
  uint64_t bytes_ = 0;
  double p_ = 0;  // ARC's target size of T1, in blocks
  std::array<size_t, 3> list_size_{};
  std::unordered_map<BlockKey, Node, PolicyKeyHash, PolicyKeyEq> nodes_;
  std::unordered_map<BlockKey, uint64_t, PolicyKeyHash, PolicyKeyEq> waiting_children_;
  std::array<Leaves, 3> leaves_;
  std::array<Ghosts, 2> ghosts_;
};

}  // namespace kvstash::tiers
