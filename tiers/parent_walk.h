// Bounded walks up parent links. A client names any block as a parent, so the links it produces
// need not form a forest: A's parent B and B's parent A make each block its own ancestor, and a
// prefix policy, which evicts only blocks with no resident child, could then never evict either.
// Two guards use these walks (docs/EVICTION.md, "Parent cycles"):
//  * DramTier::Reserve refuses a put whose parent link would make the block its own ancestor
//    among the tier's committed and reserved blocks (INVALID_ARGUMENT);
//  * the prefix policies ("prefix", "prefix-arc") drop, from their own bookkeeping, any link that
//    would close a cycle among resident blocks, so what they track is always a forest.
//
// Cost: a walk follows at most kMaxParentWalk links, and runs only when some tracked block already
// names the new block as its parent (a child put before its parent, or a block put again after it
// left). A put in chain order (parent first) walks nothing.
#pragma once

#include <cstddef>
#include <optional>

#include "kvstash/block_key.h"

namespace kvstash::tiers {

// Links followed at most by one walk.
inline constexpr size_t kMaxParentWalk = 256;

// What a walk learns about one key.
struct ParentLink {
  bool tracked = false;            // resident (or reserved) where the walk looks
  std::optional<BlockKey> parent;  // its parent link, when tracked
};

enum class Ancestry {
  kNo,       // the walk reached a root or an untracked key
  kYes,      // the link would make the block its own ancestor
  kUnknown,  // kMaxParentWalk links followed without reaching either
};

// Whether giving `key` the parent `parent` would make `key` its own ancestor: follows links up
// from `parent` through `parent_of(k) -> ParentLink` until `key`, a root, an untracked key, or
// kMaxParentWalk links. A self link (parent == key) is kYes.
template <typename ParentOf>
Ancestry WouldBeOwnAncestor(const BlockKey& key, const std::optional<BlockKey>& parent, ParentOf&& parent_of) {
  std::optional<BlockKey> at = parent;
  for (size_t links = 0; at; ++links) {
    if (*at == key) return Ancestry::kYes;
    if (links == kMaxParentWalk) return Ancestry::kUnknown;
    const ParentLink link = parent_of(*at);
    if (!link.tracked) return Ancestry::kNo;
    at = link.parent;
  }
  return Ancestry::kNo;
}

// The parent link a prefix policy keeps for `key`: `parent`, unless that is key itself or the link
// would close a cycle of resident links — or might, past kMaxParentWalk links. `nodes` maps each
// resident key to a node with an `optional<BlockKey> parent` (the link it kept); `named` says
// whether any resident node keeps a link to `key` (without one, no cycle can pass through key).
// Dropping a link only costs the order of one pair: `parent` may leave before `key`.
template <typename Nodes>
std::optional<BlockKey> ForestParent(const Nodes& nodes, const BlockKey& key, const std::optional<BlockKey>& parent,
                                     bool named) {
  if (!parent || *parent == key) return std::nullopt;
  if (!named) return parent;
  const Ancestry ancestry = WouldBeOwnAncestor(key, parent, [&](const BlockKey& k) {
    auto it = nodes.find(k);
    return it == nodes.end() ? ParentLink{} : ParentLink{true, it->second.parent};
  });
  return ancestry == Ancestry::kNo ? parent : std::nullopt;
}

}  // namespace kvstash::tiers
