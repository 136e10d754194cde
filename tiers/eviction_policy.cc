#include "tiers/eviction_policy.h"

#include <string>

namespace kvstash::tiers {

Result<std::unique_ptr<EvictionPolicy>> MakeEvictionPolicy(std::string_view name) {
  if (name == "lru") return MakeLruPolicy();
  if (name == "prefix") return MakePrefixAwarePolicy();
  return InvalidArgument("unknown eviction policy \"" + std::string(name) +
                         "\" (expected \"lru\" or \"prefix\")");
}

}  // namespace kvstash::tiers
