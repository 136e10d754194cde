// Owners and their quotas: who a block's bytes are charged to in a tier, and how many bytes each
// owner may hold there (docs/SECURITY.md "Quotas").
//
// An owner is a small number the server gives each tenant (server/tenant_owners.h); kNoOwner is
// the raw key space (no tokens, or an admin principal) and is never limited. A tier that is given
// an OwnerQuotas (DramTierOptions::quotas) charges every reservation and committed block to the
// owner Reserve named and holds each owner with a quota to it:
//  * a Reserve that would take an owner past its quota first evicts that owner's own evictable
//    blocks, in the policy's order; when they are not enough it fails RESOURCE_EXHAUSTED and
//    changes nothing else;
//  * an owner's share is protected: while an owner holds no more than its quota, no other
//    owner's Reserve evicts its blocks (an owner lowered below what it holds loses that protection
//    until it is back under).
// Quotas are enforced at reservation time; the bytes counted are as allocated (rounded).
//
// Thread-safety: Set and QuotaOf may be called concurrently from any thread; QuotaOf takes no
// kvstash lock (it reads an immutable snapshot), so tiers call it under their own locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <unordered_map>

namespace kvstash::tiers {

using OwnerId = uint32_t;
inline constexpr OwnerId kNoOwner = 0;

class OwnerQuotas {
 public:
  // Replaces every quota (bytes; owners absent from `quotas` are unlimited).
  void Set(std::unordered_map<OwnerId, uint64_t> quotas);
  // The quota of `owner` in bytes; 0 = unlimited (and always 0 for kNoOwner).
  uint64_t QuotaOf(OwnerId owner) const;

 private:
  using Table = std::unordered_map<OwnerId, uint64_t>;
  std::atomic<std::shared_ptr<const Table>> table_{std::make_shared<const Table>()};
};

// What one owner holds in a tier and what happened to it there (monotonic counters).
struct OwnerUsage {
  OwnerId owner = kNoOwner;
  uint64_t bytes = 0;             // committed + reserved, as allocated
  uint64_t blocks = 0;            // committed
  uint64_t evictions = 0;         // its blocks evicted, for its own quota or for room
  uint64_t quota_rejections = 0;  // its Reserves refused because its quota could not be met
};

}  // namespace kvstash::tiers
