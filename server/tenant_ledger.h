// TenantLedger: the daemon's tenants as the tiers see them, and what each may hold and did
// (docs/SECURITY.md "Quotas and per-tenant metrics").
//
//  * Owners: each tenant named by a token gets a small OwnerId on its first write, which the tiers
//    charge its blocks to (tiers/owner_quotas.h). Admin principals and a daemon without tokens
//    write as kNoOwner.
//  * Quotas: a quotas file gives tenants a share of the DRAM tier, one line each:
//        # tenant   dram
//        team-a     8GiB
//    (sizes as everywhere: bytes or a KiB/MiB/GiB/TiB suffix). A tenant absent from the file is
//    unlimited. Reload re-reads it (SIGHUP); a file that does not parse leaves the previous quotas
//    in force.
//  * Hits and misses by tenant, counted by the Store service.
//
// Tenant names come from the operator's tokens file, never from keys, so they may label metrics.
//
// Thread-safety: every method may be called concurrently from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
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
  uint64_t dram_bytes = 0;
};

// Parses a quotas file's text; `origin` names it in errors ("quotas.txt:3: ..."). INVALID_ARGUMENT
// for a malformed line, a bad tenant name (auth::ValidTenant), a size of 0, or a tenant twice.
Result<std::vector<TenantQuota>> ParseTenantQuotas(std::string_view text, const std::string& origin);

class TenantLedger {
 public:
  // At most this many tenants get owners; further tenants write as kNoOwner (and are logged once).
  static constexpr size_t kMaxTenants = 4096;

  // Without a quotas file: every tenant unlimited.
  TenantLedger() = default;
  // Loads `quotas_file`; INVALID_ARGUMENT when it cannot be read or parsed.
  static Result<std::unique_ptr<TenantLedger>> Create(const std::string& quotas_file);

  // The owner `tenant`'s writes are charged to; assigns one on first use. kNoOwner for "".
  tiers::OwnerId OwnerOf(std::string_view tenant);
  // The tenant of `owner`; "" for kNoOwner or an unknown owner.
  std::string TenantOf(tiers::OwnerId owner) const;

  // The DRAM tier's quotas (pass to DramTierOptions::quotas; lives as long as the ledger).
  const tiers::OwnerQuotas& dram_quotas() const { return dram_quotas_; }
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
  Status Apply(const std::vector<TenantQuota>& quotas);
  struct Counters {
    std::atomic<uint64_t> hits{0}, misses{0};
  };
  Counters& CountersOf(std::string_view tenant);

  const std::string quotas_file_;
  tiers::OwnerQuotas dram_quotas_;
  mutable Mutex mu_;
  std::unordered_map<std::string, tiers::OwnerId> owners_ GUARDED_BY(mu_);
  std::vector<std::string> tenants_ GUARDED_BY(mu_);  // owner - 1 -> tenant
  bool warned_full_ GUARDED_BY(mu_) = false;
  // Stable addresses (deque), so counting takes mu_ only to find a tenant's entry.
  std::unordered_map<std::string, Counters*> counters_ GUARDED_BY(mu_);
  std::deque<Counters> counter_store_ GUARDED_BY(mu_);
};

}  // namespace kvstash::server
