// StoreService: the kvstash.v1.Store gRPC service over one Tier. Validates every request before
// acting (server/request_validation.h); a request that fails validation changes nothing.
//
// Thread-safety: handlers run concurrently on gRPC's sync-server thread pool; all state they touch
// is the tier (thread-safe) and the metrics (thread-safe).
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "kvstash/limits.h"
#include "common/mutex.h"
#include "kvstash/v1/store.grpc.pb.h"
#include "common/authorizer.h"
#include "common/read_grant_seal.h"
#include "server/data_plane_protocol.h"
#include "server/reservation_handles.h"
#include "server/server_metrics.h"
#include "server/tenant_keys.h"
#include "server/tenant_ledger.h"
#include "tiers/byte_access.h"
#include "tiers/tier.h"
#include "tiers/tier_stats.h"
#include "transfer/transfer_server.h"

namespace kvstash::server {

// What the daemon offers for one-sided transfers; ucx == false means inline gRPC only.
struct DataPlaneInfo {
  bool ucx = false;
  std::string worker_address;
  std::string packed_rkey;
  std::string transports;
  std::string ucx_version;
  uint64_t probe_addr = 0;    // start of the registered memory
  uint64_t region_bytes = 0;  // its length
  uint64_t instance_id = 0;   // random per daemon start
  std::string gpu_data_path;  // "direct" | "staged", with UCX's reason
  // The HBM arena when its blocks are sent straight from GPU memory to device readers
  // (TransferServer::AddDeviceRegion; GetRequest.device_reader); 0 bytes: always staged.
  uint64_t hbm_region_base = 0;
  uint64_t hbm_region_bytes = 0;
  std::string hbm_serving;  // "direct: …" | "staged: …" | empty without an HBM tier
  // The two-sided protocol (transfer/push_protocol.h): offered when `transfer` is set and
  // `protocol` is not kOneSided. Not owned; outlives the service.
  DataPlaneProtocol protocol = DataPlaneProtocol::kAuto;  // as configured; replies carry its Name()
  transfer::TransferServer* transfer = nullptr;
};

// Serves two-sided reads (common/read_grant.h) only of bytes that lie inside the committed block
// the grant names, while that block is leased (the grant must claim a lease): the lease keeps the
// bytes in place while they are sent, exactly as it does for a one-sided read (docs/DATA_PLANE.md).
// With `verify`, a block whose bytes no longer match its checksum is refused (DATA_LOSS) instead
// of sent: nothing a peer with write access to the arena changed is ever served.
// With a `sealer` (tokens on), only grants it sealed are honoured: any other is PERMISSION_DENIED
// before the block is looked at.
class ReadGrantChecker final : public transfer::SendAuthorizer {
 public:
  ReadGrantChecker(tiers::Tier& tier, const Clock* clock, bool verify = true, const ReadGrantSealer* sealer = nullptr)
      : tier_(tier), clock_(clock), verify_(verify), sealer_(sealer) {}
  Status AuthorizeSend(const std::byte* addr, size_t length, std::span<const std::byte> grant) override;

  // GPU memory the transfer server also sends from (TransferServer::AddDeviceRegion): a range
  // inside `arena` is checked against `hbm`'s copy of the block, whose lease the grant must name
  // with tiers::kHbmLeaseEpochBit (TierManager::FindForDeviceReader), and hashed through `bytes`
  // (device memory is not host-addressable). Call before the authorizer is installed. All three
  // outlive the checker.
  void SetDeviceArena(std::span<std::byte> arena, tiers::Tier* hbm, const tiers::ByteAccess* bytes) {
    device_arena_ = arena;
    hbm_ = hbm;
    hbm_bytes_ = bytes;
  }

 private:
  tiers::Tier& tier_;
  std::span<std::byte> device_arena_{};
  tiers::Tier* hbm_ = nullptr;
  const tiers::ByteAccess* hbm_bytes_ = nullptr;
  const Clock* clock_;
  const bool verify_;
  const ReadGrantSealer* sealer_;  // not owned; null = unsealed grants
};

// Observes block accesses for hot-block replication (server/replication/replicator.h). Called on
// handler threads concurrently; must not block.
class AccessHooks {
 public:
  virtual ~AccessHooks() = default;
  virtual void OnHit(const BlockKey& key) = 0;                 // a Lookup or Get found the block
  virtual uint32_t ReplicasOf(const BlockKey& key) const = 0;  // copies on other members (BlockInfo.replicas)
};

struct StoreServiceOptions {
  std::string member_id;
  uint64_t default_reservation_timeout_ms = 30'000;
  // A PutBegin asking for longer is given this (its deadline_ms says so): an abandoned reservation holds
  // its room no longer than the operator allows. Asks above limits::kMaxReservationTimeoutMs are refused.
  uint64_t max_reservation_timeout_ms = limits::kMaxReservationTimeoutMs;
  uint64_t max_block_bytes = 64ULL << 20;
  uint64_t default_lease_ms = 5'000;
  DataPlaneInfo data_plane;
  std::string eviction_policy;  // reported by Stats
  bool huge_pages = false;       // reported by Stats
  const Clock* clock = SteadyClock::Default();
  AccessHooks* access_hooks = nullptr;  // optional, not owned; outlives the service
  // Hash a block before sending it inline, and refuse it when it fails (docs/DATA_PLANE.md).
  bool verify_sends = true;
  // Checks every RPC's bearer token and role (common/authorizer.h); null = no tokens, every caller
  // may do everything. Not owned; outlives the service. With it set, the keys of tenant (read,
  // write) principals are scoped to their tenant (server/tenant_keys.h), and DataPlane gives the
  // one-sided plane (its remote key reaches the whole arena, docs/SECURITY.md) only to admin
  // principals; tenants are offered the two-sided plane, whose reads need a sealed grant, or the
  // inline path.
  auth::Authorizer* authorizer = nullptr;
  // Seals the read grant of every block a response leases (BlockInfo.read_grant), for two-sided
  // reads (common/read_grant_seal.h). Set with an authorizer when two-sided transfers are served.
  // Not owned; outlives the service. Null = grants are unsealed and made by clients.
  const ReadGrantSealer* grant_sealer = nullptr;
  // Tenants' owners, quotas and hit counts (server/tenant_ledger.h); used with an authorizer only.
  // A tenant principal's puts are charged to its owner, so the tiers hold it to its quota; its
  // lookups and gets are counted by tenant. Not owned; outlives the service. Null = none.
  TenantLedger* tenants = nullptr;
};

class StoreService final : public kvstash::v1::Store::Service {
 public:
  // Serves `tier` (every block operation) and reports `stats` (the Stats RPC: usage per tier,
  // counters, hottest blocks); the daemon passes its TierManager as both. All three must outlive
  // the service; `metrics` should mirror the same `stats`.
  StoreService(StoreServiceOptions options, tiers::Tier& tier, const tiers::TierStats& stats, ServerMetrics& metrics);

  // Set once after the listening port is bound, before the first RPC is served.
  void SetMemberId(std::string member_id);
  // Where Stats reports this daemon's cluster registration from (StatsResponse.membership); called
  // on gRPC threads, also while RPCs are served. Unset means "standalone".
  void SetMembershipSource(std::function<std::string()> source);
  // Handlers running right now (for a graceful stop).
  int64_t InFlight() const { return in_flight_.load(std::memory_order_acquire); }

  grpc::Status Lookup(grpc::ServerContext*, const v1::LookupRequest*, v1::LookupResponse*) override;
  grpc::Status PutBegin(grpc::ServerContext*, const v1::PutBeginRequest*, v1::PutBeginResponse*) override;
  grpc::Status PutCommit(grpc::ServerContext*, const v1::PutCommitRequest*, v1::PutCommitResponse*) override;
  grpc::Status PutAbort(grpc::ServerContext*, const v1::PutAbortRequest*, v1::PutAbortResponse*) override;
  grpc::Status Put(grpc::ServerContext*, const v1::PutRequest*, v1::PutResponse*) override;
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest*, v1::GetResponse*) override;
  grpc::Status ReleaseLeases(grpc::ServerContext*, const v1::ReleaseLeasesRequest*,
                             v1::ReleaseLeasesResponse*) override;
  grpc::Status Remove(grpc::ServerContext*, const v1::RemoveRequest*, v1::RemoveResponse*) override;
  grpc::Status Stat(grpc::ServerContext*, const v1::StatRequest*, v1::StatResponse*) override;
  grpc::Status Stats(grpc::ServerContext*, const v1::StatsRequest*, v1::StatsResponse*) override;
  grpc::Status List(grpc::ServerContext*, const v1::ListRequest*, v1::ListResponse*) override;
  grpc::Status Health(grpc::ServerContext*, const v1::HealthRequest*, v1::HealthResponse*) override;
  grpc::Status DataPlane(grpc::ServerContext*, const v1::DataPlaneRequest*, v1::DataPlaneResponse*) override;

 private:
  // Each handler body returns a kvstash Status; the wrappers time it, count it and convert it.
  Status DoLookup(const v1::LookupRequest&, v1::LookupResponse&);
  Status DoPutBegin(const std::string& session, const v1::PutBeginRequest&, v1::PutBeginResponse&,
                    tiers::OwnerId owner = tiers::kNoOwner);
  Status DoPutCommit(const std::string& session, const v1::PutCommitRequest&);
  Status DoPutAbort(const std::string& session, const v1::PutAbortRequest&, v1::PutAbortResponse&);
  Status DoPut(const v1::PutRequest&, v1::PutResponse&, tiers::OwnerId owner = tiers::kNoOwner);
  Status DoGet(const v1::GetRequest&, v1::GetResponse&);
  Status DoReleaseLeases(const v1::ReleaseLeasesRequest&, v1::ReleaseLeasesResponse&);
  Status DoRemove(const v1::RemoveRequest&, v1::RemoveResponse&);
  Status DoStat(const v1::StatRequest&, v1::StatResponse&);
  Status DoStats(v1::StatsResponse&);
  Status DoList(const v1::ListRequest&, v1::ListResponse&);

  // OK when the call may run: no authorizer, or a token whose role is at least `needed` (its
  // principal then lands in `who` when given). Otherwise the refusal, counted under `op`.
  grpc::Status Admit(const grpc::ServerContext* context, auth::Role needed, std::string_view op,
                     auth::Principal* who = nullptr);

  // The key namespace of `principal`'s requests: set for tenant principals (read, write) when
  // tokens are on; nullopt for admin principals and without tokens (the raw key space).
  // The key space of a call: the shared namespace its auth::kSharedNamespaceHeader metadata names (a member's
  // or an admin's call), else its tenant's; nullopt = the raw key space (admins, or no tokens).
  std::optional<TenantKeys> TenantScope(const grpc::ServerContext& context, const auth::Principal& principal) const;
  static std::optional<std::string> SharedNamespaceOf(const grpc::ServerContext& context);
  // The owner a tenant principal's puts are charged to (kNoOwner without a ledger).
  tiers::OwnerId OwnerOf(const auth::Principal& principal) const {
    return options_.tenants == nullptr ? tiers::kNoOwner : options_.tenants->OwnerOf(principal.tenant);
  }
  void RecordTenantHits(const auth::Principal& principal, uint64_t hits, uint64_t misses) const {
    if (options_.tenants != nullptr) options_.tenants->RecordHits(principal.tenant, hits, misses);
  }

  void FillInfo(const tiers::BlockMeta& meta, v1::BlockInfo& info) const;
  static constexpr size_t kHottestBlocks = 10;  // reported by Stats
  void CountHit(const BlockKey& key) const {
    if (options_.access_hooks != nullptr) options_.access_hooks->OnHit(key);
  }
  std::string member_id() const;
  std::string membership() const;
  bool two_sided() const {
    return options_.data_plane.transfer != nullptr && options_.data_plane.protocol != DataPlaneProtocol::kOneSided;
  }
  // Gives back reservations PutBegin opened before it failed: their receives, their regions, their handles.
  void Unwind(const std::vector<std::pair<std::string, ReservationHandles::Entry>>& opened);

  StoreServiceOptions options_;
  tiers::Tier& tier_;
  const tiers::TierStats& stats_;
  ServerMetrics& metrics_;
  const uint64_t start_ms_;
  std::atomic<int64_t> in_flight_{0};
  ReservationHandles handles_;
  std::atomic<uint64_t> next_lane_{0};  // DataPlane deals two-sided lanes out in turn
  mutable Mutex member_id_mu_;
  std::string member_id_ GUARDED_BY(member_id_mu_);
  std::function<std::string()> membership_ GUARDED_BY(member_id_mu_);
};

// kvstash Status -> grpc::Status with the same code and message.
grpc::Status ToGrpc(const Status& status);

}  // namespace kvstash::server
