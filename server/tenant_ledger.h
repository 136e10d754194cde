// TenantLedger: the daemon's tenants as the tiers see them, and what each may hold and did
// (docs/SECURITY.md "Quotas and per-tenant metrics").
//
//  * Owners: each tenant named by a token gets a small OwnerId on its first write, which the tiers
//    charge its blocks to (tiers/owner_quotas.h). Admin principals and a daemon without tokens
//    write as kNoOwner. Where blocks outlive the process (the SSD tier), owners do too: the tier
//    keeps each owner's tenant name (AdoptOwners gives them back at start), and each owner
//    assigned later is recorded there before OwnerOf returns it (retried on the tenant's next
//    write when the tier refused it), so a tenant keeps its owner across restarts.
//  * Quotas: a quotas file gives tenants a share of the DRAM tier and of the SSD tier, one line
//    each, "-" for no limit in that tier:
//        # tenant   dram    ssd
//        team-a     8GiB    100GiB
//        team-b     -       20GiB
//        team-c     2GiB            (the SSD column may be left out: unlimited there)
//    (sizes as everywhere: bytes or a KiB/MiB/GiB/TiB suffix). A tenant absent from the file is
//    unlimited. Quotas are kept by tenant name and apply to a tenant's owner from its first write.
//    Reload re-reads the file (SIGHUP); a file that does not parse leaves the previous quotas in
//    force.
//  * Hits and misses by tenant, counted by the Store service.
//
// Tenant names come from the operator's tokens file, never from keys, so they may label metrics.
//
// Thread-safety: every method may be called concurrently from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mutex.h"
#include "kvstash/result.h"
#include "tiers/owner_quotas.h"

namespace kvstash::server {

// One line of a quotas file.
struct TenantQuota {
  std::string tenant;
  uint64_t dram_bytes = 0;  // 0 = unlimited in that tier
  uint64_t ssd_bytes = 0;
};

// Parses a quotas file's text; `origin` names it in errors ("quotas.txt:3: ..."). INVALID_ARGUMENT
// for a malformed line, a bad tenant name (auth::ValidTenant), a size of 0, a line that limits
// no tier, or a tenant twice.
Result<std::vector<TenantQuota>> ParseTenantQuotas(std::string_view text, const std::string& origin);

class TenantLedger {
 public:
  // At most this many tenants get owners; further tenants write as kNoOwner (and are logged once).
  static constexpr size_t kMaxTenants = 4096;

  // Without a quotas file: every tenant unlimited.
  TenantLedger() = default;
  // Loads `quotas_file`; INVALID_ARGUMENT when it cannot be read or parsed.
  static Result<std::unique_ptr<TenantLedger>> Create(const std::string& quotas_file);

  // Records an owner newly assigned to a tenant where the tiers keep owners across restarts
  // (SsdTier::LabelOwner). Called under the ledger's lock, before OwnerOf returns the owner.
  using OwnerRecorder = std::function<Status(tiers::OwnerId, const std::string& tenant)>;
  // Takes back the owners a durable tier recovered (owner -> tenant; entries whose name is not a
  // valid tenant, or whose tenant or owner is taken already, are skipped and logged) and never
  // assigns an owner in `in_use` (owners of recovered blocks, labelled or not) to another tenant.
  // From now on every new owner is recorded with `recorder`. Call before the first OwnerOf.
  void AdoptOwners(const std::vector<std::pair<tiers::OwnerId, std::string>>& recovered,
                   const std::vector<tiers::OwnerId>& in_use, OwnerRecorder recorder);

  // The owner `tenant`'s writes are charged to; assigns one on first use. kNoOwner for "".
  tiers::OwnerId OwnerOf(std::string_view tenant);
  // The tenant of `owner`; "" for kNoOwner or an unknown owner.
  std::string TenantOf(tiers::OwnerId owner) const;

  // The DRAM and SSD tiers' quotas (pass to DramTierOptions::quotas and SsdTierOptions::quotas;
  // they live as long as the ledger).
  const tiers::OwnerQuotas& dram_quotas() const { return dram_quotas_; }
  const tiers::OwnerQuotas& ssd_quotas() const { return ssd_quotas_; }
  // Re-reads the quotas file (no-op without one). On error the previous quotas stay in force.
  Status Reload();
  const std::string& quotas_file() const { return quotas_file_; }

  // Blocks `tenant` looked up or read: found and not found.
  void RecordHits(std::string_view tenant, uint64_t hits, uint64_t misses);
  struct Hits {
    std::string tenant;
    uint64_t hits = 0, misses = 0;
  };
  // Every tenant that was counted, by name.
  std::vector<Hits> HitsByTenant() const;

 private:
  explicit TenantLedger(std::string quotas_file) : quotas_file_(std::move(quotas_file)) {}
  // Sets the quota tables from quotas_by_tenant_ for every tenant that has an owner.
  void PublishQuotasLocked() REQUIRES(mu_);
  // Records `tenant`'s owner with the recorder; remembers a refusal to retry it.
  void RecordOwnerLocked(tiers::OwnerId owner, const std::string& tenant) REQUIRES(mu_);
  struct Counters {
    std::atomic<uint64_t> hits{0}, misses{0};
  };
  Counters& CountersOf(std::string_view tenant);

  const std::string quotas_file_;
  tiers::OwnerQuotas dram_quotas_;
  tiers::OwnerQuotas ssd_quotas_;
  mutable Mutex mu_;
  std::unordered_map<std::string, tiers::OwnerId> owners_ GUARDED_BY(mu_);
  std::unordered_map<tiers::OwnerId, std::string> tenants_ GUARDED_BY(mu_);
  tiers::OwnerId next_owner_ GUARDED_BY(mu_) = 1;
  std::map<std::string, TenantQuota, std::less<>> quotas_by_tenant_ GUARDED_BY(mu_);
  OwnerRecorder recorder_ GUARDED_BY(mu_);
  std::unordered_map<std::string, tiers::OwnerId> unrecorded_ GUARDED_BY(mu_);  // the recorder refused
  bool warned_full_ GUARDED_BY(mu_) = false;
  // Stable addresses (deque), so counting takes mu_ only to find a tenant's entry.
  std::unordered_map<std::string, Counters*> counters_ GUARDED_BY(mu_);
  std::deque<Counters> counter_store_ GUARDED_BY(mu_);
};

}  // namespace kvstash::server
