// Per-tenant metric families (README "Metrics"): what each tenant holds in the DRAM tier, its
// quota, its evictions and refused reservations there, and its lookup and get hits. Labelled by
// tenant name (from the operator's tokens file) and never by key. Mirrored from the tiers and the
// TenantLedger at every scrape.
//
// Thread-safety: the collector runs on scrape threads; the constructor registers it.
#pragma once

#include <map>
#include <unordered_map>

#include "common/metrics.h"
#include "common/mutex.h"
#include "server/tenant_ledger.h"
#include "tiers/tier_stats.h"

namespace kvstash::server {

class TenantMetrics {
 public:
  // `stats` and `tenants` must outlive `registry`'s scrapes.
  TenantMetrics(metrics::Registry& registry, const tiers::TierStats& stats, TenantLedger& tenants);

 private:
  void Collect();

  const tiers::TierStats& stats_;
  TenantLedger& tenants_;
  metrics::Family<metrics::Gauge>& used_;
  metrics::Family<metrics::Gauge>& blocks_;
  metrics::Family<metrics::Gauge>& quota_;
  metrics::Family<metrics::Counter>& evictions_;
  metrics::Family<metrics::Counter>& rejections_;
  metrics::Family<metrics::Counter>& reads_;
  Mutex collect_mu_;
  std::map<tiers::TierKind, std::unordered_map<tiers::OwnerId, tiers::OwnerUsage>> last_usage_ GUARDED_BY(collect_mu_);
  std::unordered_map<std::string, TenantLedger::Hits> last_hits_ GUARDED_BY(collect_mu_);
};

}  // namespace kvstash::server
