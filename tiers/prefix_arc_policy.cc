// "prefix-arc-unguarded": ARC (Megiddo & Modha, FAST'03) restricted to the leaves of the resident
// prefix forest, so chains shrink from the tail and a resident block never loses its resident
// parent to eviction (docs/ARCHITECTURE.md §4), as in "prefix". The daemon's default "prefix-arc" is this
// policy under the LRU guard (tiers/lru_guard_policy.h), which may switch its victim order.
//
// Why ARC: on Mooncake-style traces most blocks are touched once (58% of the distinct blocks of
// the synthetic trace), while a block touched twice is touched again ~80% of the time, at reuse
// distances longer than LRU's residency at small capacities. ARC keeps once-touched blocks (T1)
// apart from blocks touched at least twice (T2), and learns from two ghost lists of recently
// evicted keys (B1, B2) how much room T1 deserves: a returning B1 key grows T1's target p, a
// returning B2 key shrinks it. One-touch tails then stop flushing the reused prefixes, yet at large
// capacities p should grow and the policy behave like LRU — but p grows by one block per miss it
// causes, and on multi-turn traces, where T2 fills with ended conversations and T1 holds each live
// session's newest blocks, it does not grow fast enough: the reason for the guard (issue 21).
// Prefix-aware adaptation: a re-put chain is a run of ghost hits, and only the run's first block
// moves p (StartsGhostRun), so one long chain counts as one piece of evidence, not one per block.
// docs/EVICTION.md has the measurements.
//
// Reuse advice (OnAdvise) acts only on blocks not reused since they became resident: "likely"
// moves one from T1 (or the cold list) to T2, as if touched twice; "unlikely" moves one from T1
// to a cold list whose leaves leave before any other block. A block in T2 keeps its place:
// observed reuse outranks advice. A cold block that is read moves to T2 like any other, and on
// eviction it is remembered in B1, as T1's blocks are.
//
// Bookkeeping, all O(log n) per call (amortised O(1) for the ghosts):
//  * nodes_: every resident key with its parent, list (T1/T2), recency tick and resident children;
//  * waiting_children_: resident children of a non-resident parent, as in "prefix";
//  * leaves_[T1], leaves_[T2], leaves_[kCold]: (tick, key) of resident leaves of each list,
//    coldest first;
//  * ghosts_[B1], ghosts_[B2]: FIFO of evicted keys, each bounded by kGhostFactor x resident keys.
// PickVictim takes the coldest evictable leaf of the cold list, then, in VictimOrder::kArc, of T1
// when T1 holds more than p blocks (else of T2), falling back to the other list; in kLeafLru, the
// coldest leaf of T1 and T2 merged by tick (the "prefix" order); in kLru, the coldest block (the
// "lru" order; all_ tracks every block only when asked, for the LRU guard above an SSD). It skips
// keys the tier says are not evictable, O(k log n).
//
// Any parent graph: as in "prefix", OnInsert drops a link that would close a cycle of resident
// links (or that it cannot clear within kMaxParentWalk links, tiers/parent_walk.h), so nodes_
// always holds a forest: every block with a resident child has a leaf below it, and with nothing
// pinned or leased PickVictim always finds a victim until the policy is empty. Parent cycles once
// left every block of the cycle with a resident child and none a leaf: unevictable (issue 13).
#include "tiers/prefix_arc_policy.h"

#include <algorithm>

#include "tiers/parent_walk.h"

namespace kvstash::tiers {
namespace {

// Ghost entries per resident key in each ghost list. ARC's textbook bound is 1; 3 remembers reuse
// at distances up to ~3x the cache, which the measured traces need (docs/EVICTION.md).
constexpr size_t kGhostFactor = 3;
constexpr size_t kMinGhosts = 64;

}  // namespace

void PrefixArcPolicy::OnInsert(const BlockKey& key, const std::optional<BlockKey>& parent, uint64_t size) {
  if (nodes_.contains(key)) OnErase(key);  // a re-insert starts over with its new parent
  Node node;
  if (auto w = waiting_children_.find(key); w != waiting_children_.end()) {
    node.children = w->second;
    waiting_children_.erase(w);
  }
  node.parent = ForestParent(nodes_, key, parent, node.children > 0);
  node.tick = ++tick_;
  node.size = size;
  node.list = kT1;
  const double resident = static_cast<double>(nodes_.size() + 1);
  const bool adapt = StartsGhostRun(node.parent);
  if (ForgetGhost(kT1, key)) {
    if (adapt) p_ = std::min(resident, p_ + std::max(1.0, Ratio(kT2, kT1)));
    node.list = kT2;
  } else if (ForgetGhost(kT2, key)) {
    if (adapt) p_ = std::max(0.0, p_ - std::max(1.0, Ratio(kT1, kT2)));
    node.list = kT2;
  }
  if (node.parent) {
    if (auto p = nodes_.find(*node.parent); p != nodes_.end()) {
      if (p->second.children++ == 0) leaves_[p->second.list].erase({p->second.tick, p->first});
    } else {
      ++waiting_children_[*node.parent];
    }
  }
  if (node.children == 0) leaves_[node.list].emplace(node.tick, key);
  ++list_size_[node.list];
  bytes_ += size;
  if (track_all_) all_.emplace(node.tick, key);
  nodes_.emplace(key, node);
}

void PrefixArcPolicy::OnAccess(const BlockKey& key) {
  auto it = nodes_.find(key);
  if (it == nodes_.end()) return;
  Node& node = it->second;
  if (node.children == 0) leaves_[node.list].erase({node.tick, key});
  --list_size_[node.list];
  node.list = kT2;
  ++list_size_[node.list];
  if (track_all_) all_.erase({node.tick, key});
  node.tick = ++tick_;
  if (track_all_) all_.emplace(node.tick, key);
  node.accessed = true;
  if (node.children == 0) leaves_[node.list].emplace(node.tick, key);
}

void PrefixArcPolicy::OnAdvise(const BlockKey& key, ReuseAdvice advice) {
  auto it = nodes_.find(key);
  if (it == nodes_.end() || it->second.list == kT2) return;
  const List to = advice == ReuseAdvice::kLikely ? kT2 : kCold;
  if (advice == ReuseAdvice::kUnlikely && it->second.list != kT1) return;
  Move(it->first, it->second, to);
}

void PrefixArcPolicy::OnErase(const BlockKey& key) {
  auto it = nodes_.find(key);
  if (it == nodes_.end()) return;
  const Node node = it->second;
  nodes_.erase(it);
  --list_size_[node.list];
  bytes_ -= node.size;
  if (track_all_) all_.erase({node.tick, key});
  if (node.children == 0) {
    leaves_[node.list].erase({node.tick, key});
  } else {
    // Removed out of order (an admin Remove): its resident children now wait for it.
    waiting_children_[key] += node.children;
  }
  RememberGhost(node.list == kT2 ? kT2 : kT1, key);
  if (!node.parent) return;
  if (auto p = nodes_.find(*node.parent); p != nodes_.end()) {
    if (--p->second.children == 0) leaves_[p->second.list].emplace(p->second.tick, p->first);
  } else if (auto w = waiting_children_.find(*node.parent); w != waiting_children_.end()) {
    if (--w->second == 0) waiting_children_.erase(w);
  }
}

std::optional<BlockKey> PrefixArcPolicy::PickVictim(const std::function<bool(const BlockKey&)>& evictable) {
  for (const auto& [tick, key] : leaves_[kCold]) {
    if (evictable(key)) return key;
  }
  switch (order_) {
    case VictimOrder::kArc:
      return ArcVictim(evictable);
    case VictimOrder::kLeafLru:
      return LeafLruVictim(evictable);
    case VictimOrder::kLru:
      return LruVictim(evictable);
  }
  return std::nullopt;
}

// Any block, coldest first: a parent may leave before its children (they then wait for it).
std::optional<BlockKey> PrefixArcPolicy::LruVictim(const std::function<bool(const BlockKey&)>& evictable) const {
  for (const auto& [tick, key] : all_) {
    if (evictable(key)) return key;
  }
  return LeafLruVictim(evictable);  // not tracking: the nearest order it can give
}

std::optional<BlockKey> PrefixArcPolicy::ArcVictim(const std::function<bool(const BlockKey&)>& evictable) const {
  const List first = static_cast<double>(list_size_[kT1]) > p_ || list_size_[kT2] == 0 ? kT1 : kT2;
  for (List list : {first, first == kT1 ? kT2 : kT1}) {
    for (const auto& [tick, key] : leaves_[list]) {
      if (evictable(key)) return key;
    }
  }
  return std::nullopt;
}

// T1's and T2's leaves merged by tick (ticks are one clock for both lists), coldest first.
std::optional<BlockKey> PrefixArcPolicy::LeafLruVictim(const std::function<bool(const BlockKey&)>& evictable) const {
  auto a = leaves_[kT1].begin();
  auto b = leaves_[kT2].begin();
  while (a != leaves_[kT1].end() || b != leaves_[kT2].end()) {
    const bool take_a = b == leaves_[kT2].end() || (a != leaves_[kT1].end() && *a < *b);
    const BlockKey& key = take_a ? (a++)->second : (b++)->second;
    if (evictable(key)) return key;
  }
  return std::nullopt;
}

std::optional<PrefixArcPolicy::Resident> PrefixArcPolicy::Find(const BlockKey& key) const {
  auto it = nodes_.find(key);
  if (it == nodes_.end()) return std::nullopt;
  return Resident{it->second.parent, it->second.size};
}

// Whether a ghost hit on a block with this parent is new evidence for ARC's target. A chain
// re-put after its tail was evicted is a run of ghost hits, one per block; the run is one missed
// prefix extension, so only its first block (no parent, a parent this tier does not hold, or a
// resident parent that was read rather than just inserted) moves p. Counting every block let one
// long chain swing p by its length.
bool PrefixArcPolicy::StartsGhostRun(const std::optional<BlockKey>& parent) const {
  if (!parent) return true;
  auto it = nodes_.find(*parent);
  return it == nodes_.end() || it->second.accessed;
}

// Moves a resident node to another list, keeping its recency tick.
void PrefixArcPolicy::Move(const BlockKey& key, Node& node, List to) {
  if (node.children == 0) {
    leaves_[node.list].erase({node.tick, key});
    leaves_[to].emplace(node.tick, key);
  }
  --list_size_[node.list];
  ++list_size_[to];
  node.list = to;
}

double PrefixArcPolicy::Ratio(List num, List den) const {
  const double d = static_cast<double>(ghosts_[den].index.size());
  return d == 0 ? 1.0 : static_cast<double>(ghosts_[num].index.size()) / d;
}

bool PrefixArcPolicy::ForgetGhost(List list, const BlockKey& key) {
  Ghosts& g = ghosts_[list];
  auto it = g.index.find(key);
  if (it == g.index.end()) return false;
  g.fifo.erase(it->second);
  g.index.erase(it);
  return true;
}

void PrefixArcPolicy::RememberGhost(List list, const BlockKey& key) {
  ForgetGhost(kT1, key);
  ForgetGhost(kT2, key);
  Ghosts& g = ghosts_[list];
  g.fifo.push_back(key);
  g.index.emplace(key, std::prev(g.fifo.end()));
  const size_t bound = std::max(kMinGhosts, kGhostFactor * nodes_.size());
  for (Ghosts& each : ghosts_) {
    while (each.index.size() > bound) {
      each.index.erase(each.fifo.front());
      each.fifo.pop_front();
    }
  }
}

std::unique_ptr<EvictionPolicy> MakeUnguardedPrefixArcPolicy() { return std::make_unique<PrefixArcPolicy>(); }

}  // namespace kvstash::tiers
