// Weighted rendezvous (highest-random-weight) hashing of block keys over cluster members: the one
// function that the daemons, the SDK and the conductor share to agree on a key's owner.
//
// Each member gets, for each key, the score  -weight / ln(u)  where u in (0, 1) is a hash of
// (key, member id). The owner is the member with the highest score; the next ones in score order
// are the replica owners. A member's share of the keys is proportional to its weight, and adding or
// removing a member moves only the keys it gains or loses.
//
// Thread-safety: pure functions and an immutable value type; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/block_key.h"

namespace kvstash {

struct RendezvousMember {
  std::string id;       // stable member id; the hash seed is derived from it
  double weight = 1.0;  // > 0; non-positive weights never own a key
};

// A fixed set of members, ready for scoring (member seeds precomputed).
class RendezvousRing {
 public:
  RendezvousRing() = default;
  explicit RendezvousRing(std::vector<RendezvousMember> members);

  size_t size() const { return members_.size(); }
  bool empty() const { return members_.empty(); }
  const RendezvousMember& member(size_t i) const { return members_[i]; }

  // Index of the owner of `key`; REQUIRES: !empty().
  size_t Owner(const BlockKey& key) const;
  // Up to `n` member indices in descending score order (owner first).
  std::vector<size_t> Order(const BlockKey& key, size_t n) const;

  // The score of member i for `key` (exposed for tests and tools).
  double Score(const BlockKey& key, size_t i) const;

 private:
  std::vector<RendezvousMember> members_;
  std::vector<uint64_t> seeds_;
};

}  // namespace kvstash
