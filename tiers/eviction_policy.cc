#include "tiers/eviction_policy.h"

#include <string>

namespace kvstash::tiers {

Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(std::string_view name) {
  if (name == "lru") return MakeLruPolicy();
  if (name == "prefix") return MakePrefixAwarePolicy();
  if (name == "prefix-arc") return MakePrefixArcPolicy();
  if (name == "prefix-arc-unguarded") return MakeUnguardedPrefixArcPolicy();
  return InvalidArgument("unknown eviction policy \"" + std::string(name) +
                         "\" (expected \"lru\", \"prefix\", \"prefix-arc\" or \"prefix-arc-unguarded\")");
}

std::vector<std::string_view> EvictionPolicyNames() { return {"lru", "prefix", "prefix-arc", "prefix-arc-unguarded"}; }

}  // namespace kvstash::tiers
