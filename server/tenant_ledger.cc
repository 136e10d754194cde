#include "server/tenant_ledger.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "common/auth.h"
#include "common/units.h"

namespace kvstash::server {

Result<std::vector<TenantQuota>> ParseTenantQuotas(std::string_view text, const std::string& origin) {
  std::vector<TenantQuota> out;
  std::unordered_set<std::string> seen;
  std::istringstream lines{std::string(text)};
  std::string line;
  for (size_t number = 1; std::getline(lines, line); ++number) {
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream fields(line);
    std::string tenant, dram, ssd, extra;
    if (!(fields >> tenant)) continue;  // blank or comment
    const std::string where = origin + ":" + std::to_string(number) + ": ";
    if (!(fields >> dram) || (fields >> ssd && fields >> extra)) {
      return InvalidArgument(where + "expected '<tenant> <dram bytes|-> [<ssd bytes|->]'");
    }
    if (!auth::ValidTenant(tenant)) return InvalidArgument(where + "a tenant is 1..64 of A-Z a-z 0-9 . _ -");
    TenantQuota quota{tenant, 0, 0};
    for (auto [text, bytes] : {std::pair{&dram, &quota.dram_bytes}, std::pair{&ssd, &quota.ssd_bytes}}) {
      if (text->empty() || *text == "-") continue;
      Result<uint64_t> parsed = ParseByteSize(*text);
      if (!parsed.ok()) return InvalidArgument(where + parsed.status().message());
      if (*parsed == 0) return InvalidArgument(where + "a quota of 0 bytes; write '-' (or leave the tenant out) for no limit");
      *bytes = *parsed;
    }
    if (quota.dram_bytes == 0 && quota.ssd_bytes == 0) {
      return InvalidArgument(where + "no tier is limited; leave the tenant out to make it unlimited");
    }
    if (!seen.insert(tenant).second) return InvalidArgument(where + "tenant '" + tenant + "' is listed twice");
    out.push_back(std::move(quota));
  }
  return out;
}

namespace {

Result<std::vector<TenantQuota>> LoadTenantQuotas(const std::string& path) {
  std::ifstream in(path);
  if (!in) return InvalidArgument("cannot read the quotas file " + path);
  std::stringstream text;
  text << in.rdbuf();
  return ParseTenantQuotas(text.str(), path);
}

}  // namespace

Result<std::unique_ptr<TenantLedger>> TenantLedger::Create(const std::string& quotas_file) {
  std::unique_ptr<TenantLedger> ledger(new TenantLedger(quotas_file));
  KVSTASH_RETURN_IF_ERROR(ledger->Reload());
  return ledger;
}

Status TenantLedger::Reload() {
  if (quotas_file_.empty()) return Status::Ok();
  KVSTASH_ASSIGN_OR_RETURN(std::vector<TenantQuota> quotas, LoadTenantQuotas(quotas_file_));
  MutexLock lock(mu_);
  quotas_by_tenant_.clear();
  for (TenantQuota& q : quotas) quotas_by_tenant_.emplace(q.tenant, std::move(q));
  PublishQuotasLocked();
  return Status::Ok();
}

void TenantLedger::PublishQuotasLocked() {
  std::unordered_map<tiers::OwnerId, uint64_t> dram, ssd;
  for (const auto& [tenant, q] : quotas_by_tenant_) {
    auto owner = owners_.find(tenant);
    if (owner == owners_.end()) continue;  // applied at its first write
    if (q.dram_bytes > 0) dram[owner->second] = q.dram_bytes;
    if (q.ssd_bytes > 0) ssd[owner->second] = q.ssd_bytes;
  }
  dram_quotas_.Set(std::move(dram));
  ssd_quotas_.Set(std::move(ssd));
}

void TenantLedger::AdoptOwners(const std::vector<std::pair<tiers::OwnerId, std::string>>& recovered,
                               const std::vector<tiers::OwnerId>& in_use, OwnerRecorder recorder) {
  MutexLock lock(mu_);
  for (const auto& [owner, tenant] : recovered) {
    next_owner_ = std::max<tiers::OwnerId>(next_owner_, owner + 1);
    if (owner == tiers::kNoOwner || !auth::ValidTenant(tenant) || owners_.contains(tenant) ||
        tenants_.contains(owner)) {
      spdlog::warn("tenants: owner {} recorded as '{}' is not taken back (an invalid or repeated entry); its "
                   "blocks are charged to no tenant",
                   owner, auth::ValidTenant(tenant) ? tenant : std::string("(invalid name)"));
      continue;
    }
    owners_.emplace(tenant, owner);
    tenants_.emplace(owner, tenant);
  }
  for (tiers::OwnerId owner : in_use) next_owner_ = std::max<tiers::OwnerId>(next_owner_, owner + 1);
  recorder_ = std::move(recorder);
  PublishQuotasLocked();
}

void TenantLedger::RecordOwnerLocked(tiers::OwnerId owner, const std::string& tenant) {
  if (!recorder_) return;
  if (Status st = recorder_(owner, tenant); !st.ok()) {
    if (unrecorded_.emplace(tenant, owner).second) {
      spdlog::warn("tenants: owner {} of '{}' could not be recorded ({}); retried at its next write", owner, tenant,
                   st.ToString());
    }
    return;
  }
  unrecorded_.erase(tenant);
}

tiers::OwnerId TenantLedger::OwnerOf(std::string_view tenant) {
  if (tenant.empty()) return tiers::kNoOwner;
  MutexLock lock(mu_);
  if (auto it = owners_.find(std::string(tenant)); it != owners_.end()) {
    if (!unrecorded_.empty() && unrecorded_.contains(it->first)) RecordOwnerLocked(it->second, it->first);
    return it->second;
  }
  if (owners_.size() >= kMaxTenants || next_owner_ == 0) {  // next_owner_ wraps to 0 after 2^32 - 1
    if (!warned_full_) spdlog::warn("more than {} tenants: further tenants' blocks are charged to no one", kMaxTenants);
    warned_full_ = true;
    return tiers::kNoOwner;
  }
  const tiers::OwnerId owner = next_owner_++;
  owners_.emplace(std::string(tenant), owner);
  tenants_.emplace(owner, std::string(tenant));
  RecordOwnerLocked(owner, std::string(tenant));
  if (quotas_by_tenant_.find(tenant) != quotas_by_tenant_.end()) PublishQuotasLocked();
  return owner;
}

std::string TenantLedger::TenantOf(tiers::OwnerId owner) const {
  MutexLock lock(mu_);
  auto it = tenants_.find(owner);
  return it == tenants_.end() ? "" : it->second;
}

TenantLedger::Counters& TenantLedger::CountersOf(std::string_view tenant) {
  MutexLock lock(mu_);
  auto it = counters_.find(std::string(tenant));
  if (it != counters_.end()) return *it->second;
  Counters& c = counter_store_.emplace_back();
  counters_.emplace(std::string(tenant), &c);
  return c;
}

void TenantLedger::RecordHits(std::string_view tenant, uint64_t hits, uint64_t misses) {
  if (tenant.empty()) return;
  Counters& c = CountersOf(tenant);
  c.hits.fetch_add(hits, std::memory_order_relaxed);
  c.misses.fetch_add(misses, std::memory_order_relaxed);
}

std::vector<TenantLedger::Hits> TenantLedger::HitsByTenant() const {
  std::vector<Hits> out;
  {
    MutexLock lock(mu_);
    for (const auto& [tenant, c] : counters_) {
      out.push_back({tenant, c->hits.load(std::memory_order_relaxed), c->misses.load(std::memory_order_relaxed)});
    }
  }
  std::sort(out.begin(), out.end(), [](const Hits& a, const Hits& b) { return a.tenant < b.tenant; });
  return out;
}

}  // namespace kvstash::server
