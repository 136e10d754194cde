#include "tiers/owner_quotas.h"

#include <utility>

namespace kvstash::tiers {

void OwnerQuotas::Set(std::unordered_map<OwnerId, uint64_t> quotas) {
  quotas.erase(kNoOwner);
  table_.store(std::make_shared<const Table>(std::move(quotas)), std::memory_order_release);
}

uint64_t OwnerQuotas::QuotaOf(OwnerId owner) const {
  if (owner == kNoOwner) return 0;
  const std::shared_ptr<const Table> table = table_.load(std::memory_order_acquire);
  auto it = table->find(owner);
  return it == table->end() ? 0 : it->second;
}

}  // namespace kvstash::tiers
