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
    std::string tenant, size, extra;
    if (!(fields >> tenant)) continue;  // blank or comment
    const std::string where = origin + ":" + std::to_string(number) + ": ";
    if (!(fields >> size) || (fields >> extra)) return InvalidArgument(where + "expected '<tenant> <dram bytes>'");
    if (!auth::ValidTenant(tenant)) return InvalidArgument(where + "a tenant is 1..64 of A-Z a-z 0-9 . _ -");
    Result<uint64_t> bytes = ParseByteSize(size);
    if (!bytes.ok()) return InvalidArgument(where + bytes.status().message());
    if (*bytes == 0) return InvalidArgument(where + "a quota of 0 bytes; leave the tenant out to make it unlimited");
    if (!seen.insert(tenant).second) return InvalidArgument(where + "tenant '" + tenant + "' is listed twice");
    out.push_back({tenant, *bytes});
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
  return Apply(quotas);
}

Status TenantLedger::Apply(const std::vector<TenantQuota>& quotas) {
  std::unordered_map<tiers::OwnerId, uint64_t> dram;
  for (const TenantQuota& q : quotas) {
    const tiers::OwnerId owner = OwnerOf(q.tenant);
    if (owner == tiers::kNoOwner) return ResourceExhausted("more than " + std::to_string(kMaxTenants) + " tenants");
    dram[owner] = q.dram_bytes;
  }
  dram_quotas_.Set(std::move(dram));
  return Status::Ok();
}

tiers::OwnerId TenantLedger::OwnerOf(std::string_view tenant) {
  if (tenant.empty()) return tiers::kNoOwner;
  MutexLock lock(mu_);
  if (auto it = owners_.find(std::string(tenant)); it != owners_.end()) return it->second;
  if (tenants_.size() >= kMaxTenants) {
    if (!warned_full_) spdlog::warn("more than {} tenants: further tenants' blocks are charged to no one", kMaxTenants);
    warned_full_ = true;
    return tiers::kNoOwner;
  }
  tenants_.emplace_back(tenant);
  const auto owner = static_cast<tiers::OwnerId>(tenants_.size());
  owners_.emplace(std::string(tenant), owner);
  return owner;
}

std::string TenantLedger::TenantOf(tiers::OwnerId owner) const {
  MutexLock lock(mu_);
  if (owner == tiers::kNoOwner || owner > tenants_.size()) return "";
  return tenants_[owner - 1];
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
