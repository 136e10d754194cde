#include "tiers/tier.h"

namespace kvstash::tiers {

std::string_view TierName(TierKind kind) {
  switch (kind) {
    case TierKind::kHbm:
      return "hbm";
    case TierKind::kDram:
      return "dram";
    case TierKind::kSsd:
      return "ssd";
  }
  return "unknown";
}

}  // namespace kvstash::tiers
