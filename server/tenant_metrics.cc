#include "server/tenant_metrics.h"

#include <string>

namespace kvstash::server {

TenantMetrics::TenantMetrics(metrics::Registry& r, const tiers::TierStats& stats, TenantLedger& tenants)
    : stats_(stats),
      tenants_(tenants),
      used_(r.AddGauge("kvstash_tenant_used_bytes",
                       "Bytes a tenant's blocks and open reservations take in a tier, as allocated.",
                       {"tenant", "tier"})),
      blocks_(r.AddGauge("kvstash_tenant_blocks", "A tenant's committed blocks in a tier.", {"tenant", "tier"})),
      quota_(r.AddGauge("kvstash_tenant_quota_bytes",
                        "A tenant's quota of a tier (the quotas file); absent for unlimited tenants.",
                        {"tenant", "tier"})),
      evictions_(r.AddCounter("kvstash_tenant_evictions_total",
                              "A tenant's blocks evicted from a tier, for its own quota or to make room.",
                              {"tenant", "tier"})),
      rejections_(r.AddCounter("kvstash_tenant_rejections_total",
                               "A tenant's reservations refused in a tier: its quota or the tier was full of "
                               "blocks it may not evict.",
                               {"tenant", "tier"})),
      reads_(r.AddCounter("kvstash_tenant_read_blocks_total",
                          "Blocks a tenant asked for by Lookup and Get: found (hit) or not (miss).",
                          {"tenant", "result"})) {
  r.AddCollector([this] { Collect(); });
}

void TenantMetrics::Collect() {
  auto delta = [](uint64_t now_v, uint64_t then_v) { return static_cast<double>(now_v - then_v); };
  MutexLock lock(collect_mu_);
  const struct {
    tiers::TierKind kind;
    std::vector<tiers::OwnerUsage> usage;
    const tiers::OwnerQuotas& quotas;
  } tiers_seen[] = {{tiers::TierKind::kDram, stats_.DramOwnerUsage(), tenants_.dram_quotas()},
                    {tiers::TierKind::kSsd, stats_.SsdOwnerUsage(), tenants_.ssd_quotas()}};
  for (const auto& t : tiers_seen) {
    const std::string tier(tiers::TierName(t.kind));
    std::unordered_map<tiers::OwnerId, tiers::OwnerUsage>& last_of_tier = last_usage_[t.kind];
    for (const tiers::OwnerUsage& u : t.usage) {
      const std::string tenant = tenants_.TenantOf(u.owner);
      if (tenant.empty()) continue;
      used_.WithLabels({tenant, tier}).Set(static_cast<double>(u.bytes));
      blocks_.WithLabels({tenant, tier}).Set(static_cast<double>(u.blocks));
      if (const uint64_t quota = t.quotas.QuotaOf(u.owner); quota > 0) {
        quota_.WithLabels({tenant, tier}).Set(static_cast<double>(quota));
      } else {
        quota_.Remove({tenant, tier});  // lifted by a reload: the series goes, as for a tenant never limited
      }
      tiers::OwnerUsage& last = last_of_tier[u.owner];
      evictions_.WithLabels({tenant, tier}).Inc(delta(u.evictions, last.evictions));
      rejections_.WithLabels({tenant, tier}).Inc(delta(u.quota_rejections, last.quota_rejections));
      last = u;
    }
  }
  for (const TenantLedger::Hits& h : tenants_.HitsByTenant()) {
    TenantLedger::Hits& last = last_hits_[h.tenant];
    reads_.WithLabels({h.tenant, "hit"}).Inc(delta(h.hits, last.hits));
    reads_.WithLabels({h.tenant, "miss"}).Inc(delta(h.misses, last.misses));
    last = h;
  }
}

}  // namespace kvstash::server
