// "prefix": LRU restricted to the leaves of the resident prefix forest, so chains shrink from the
// tail and a resident block never loses its resident parent to eviction (docs/ARCHITECTURE.md §4).
//
// Bookkeeping, all O(log n) per call:
//  * nodes_: every resident key with its parent (when known), its recency tick and its number of
//    resident children;
//  * waiting_children_: for a parent that is not resident, how many resident children name it, so
//    a parent inserted after its children starts with the right count (it is then not a leaf);
//  * leaves_: (tick, key) of resident keys without resident children — the eviction candidates,
//    coldest first.
// When the last resident child of a resident parent leaves, the parent becomes a leaf again with
// its own (older) tick. PickVictim walks leaves coldest first and skips keys the tier says are not
// evictable, so it is O(k log n) in the number of keys skipped.
//
// Any parent graph: the links kept in nodes_ always form a forest. OnInsert drops a link that would
// make the block its own ancestor among resident blocks (A's parent B, then B's parent A; a self
// link; a cycle closed by a re-put), or that it cannot clear within kMaxParentWalk links
// (tiers/parent_walk.h). So every block with a resident child has a leaf below it, and with
// nothing pinned or leased PickVictim always finds a victim until the policy is empty.
//
// A chain whose leaf is pinned or leased keeps all its ancestors resident, by design.
#include <set>
#include <unordered_map>
#include <utility>

#include "tiers/eviction_policy.h"
#include "tiers/policy_key_hash.h"
#include "tiers/parent_walk.h"

namespace kvstash::tiers {
namespace {

class PrefixAwarePolicy final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "prefix"; }

  void OnInsert(const BlockKey& key, const std::optional<BlockKey>& parent,
                uint64_t /*size*/) override {
    if (nodes_.contains(key)) OnErase(key);  // a re-insert starts over with its new parent
    Node node;
    node.tick = ++tick_;
    if (auto w = waiting_children_.find(key); w != waiting_children_.end()) {
      node.children = w->second;
      waiting_children_.erase(w);
    }
    node.parent = ForestParent(nodes_, key, parent, node.children > 0);
    if (node.parent) {
      if (auto p = nodes_.find(*node.parent); p != nodes_.end()) {
        if (p->second.children++ == 0) leaves_.erase({p->second.tick, p->first});
      } else {
        ++waiting_children_[*node.parent];
      }
    }
    if (node.children == 0) leaves_.emplace(node.tick, key);
    nodes_.emplace(key, node);
  }

  void OnAccess(const BlockKey& key) override {
    auto it = nodes_.find(key);
    if (it == nodes_.end()) return;
    Node& node = it->second;
    const uint64_t old_tick = node.tick;
    node.tick = ++tick_;
    if (node.children == 0) {
      leaves_.erase({old_tick, key});
      leaves_.emplace(node.tick, key);
    }
  }

  void OnErase(const BlockKey& key) override {
    auto it = nodes_.find(key);
    if (it == nodes_.end()) return;
    const Node node = it->second;
    nodes_.erase(it);
    if (node.children == 0) {
      leaves_.erase({node.tick, key});
    } else {
      // Removed out of order (an admin Remove): its resident children now wait for it.
      waiting_children_[key] += node.children;
    }
    if (!node.parent) return;
    if (auto p = nodes_.find(*node.parent); p != nodes_.end()) {
      if (--p->second.children == 0) leaves_.emplace(p->second.tick, p->first);
    } else if (auto w = waiting_children_.find(*node.parent); w != waiting_children_.end()) {
      if (--w->second == 0) waiting_children_.erase(w);
    }
  }

  std::optional<BlockKey> PickVictim(
      const std::function<bool(const BlockKey&)>& evictable) override {
    for (const auto& [tick, key] : leaves_) {
      if (evictable(key)) return key;
    }
    return std::nullopt;
  }

  size_t size() const override { return nodes_.size(); }

 private:
  struct Node {
    std::optional<BlockKey> parent;
    uint64_t tick = 0;
    uint64_t children = 0;  // resident children
  };

  uint64_t tick_ = 0;
  std::unordered_map<BlockKey, Node, PolicyKeyHash, PolicyKeyEq> nodes_;
  std::unordered_map<BlockKey, uint64_t, PolicyKeyHash, PolicyKeyEq> waiting_children_;
  std::set<std::pair<uint64_t, BlockKey>> leaves_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakePrefixAwarePolicy() {
  return std::make_unique<PrefixAwarePolicy>();
}

}  // namespace kvstash::tiers
