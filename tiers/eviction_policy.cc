#include "tiers/eviction_policy.h"

#include <span>
#include <string>

namespace kvstash::tiers {

std::string_view Name(EvictionPolicyKind kind) { return settings::EnumToName(std::span(kEvictionPolicyNames), kind); }

Result<EvictionPolicyKind> ParseEvictionPolicy(std::string_view name) {
  Result<EvictionPolicyKind> kind = settings::ParseEnum<EvictionPolicyKind>(kEvictionPolicyNames, name);
  if (!kind.ok()) return InvalidArgument("eviction policy " + kind.status().message());
  return kind;
}

std::unique_ptr<EvictionPolicy> MakeEvictionPolicy(EvictionPolicyKind kind) {
  switch (kind) {
    case EvictionPolicyKind::kLru: return MakeLruPolicy();
    case EvictionPolicyKind::kPrefix: return MakePrefixAwarePolicy();
    case EvictionPolicyKind::kPrefixArc: return MakePrefixArcPolicy();
    case EvictionPolicyKind::kPrefixArcUnguarded: return MakeUnguardedPrefixArcPolicy();
  }
  return MakePrefixArcPolicy();  // unreachable: the switch names every kind
}

}  // namespace kvstash::tiers
