// Daemon::Start's first steps: the UCX data plane and its arena, the tiers, and the Store service
// with what it hands work to (daemon_impl.h). The later steps (ports, cluster) are in daemon.cc.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "common/auth.h"
#include "common/units.h"
#include "server/daemon_impl.h"

#include "common/auth.h"
#include "server/hbm_setup.h"
#include "server/ucx_listen.h"
#include "server/version.h"
#include "tiers/arena.h"
#include "tiers/dram_tier.h"

namespace kvstash::server {
namespace {

using daemon_internal::SplitHostPort;

// The UCX options every context of this daemon gets: its transports, and the network devices
// --ucx-listen resolves to (server/ucx_listen.h). INVALID_ARGUMENT when that setting names no
// usable interface.
Result<transfer::UcxOptions> DaemonUcxOptions(const DaemonConfig& config) {
  transfer::UcxOptions ucx;
  ucx.transports = config.ucx_transports;
  if (!config.ucx_enabled) return ucx;
  KVSTASH_ASSIGN_OR_RETURN(const auto grpc_hp, SplitHostPort(config.listen));
  KVSTASH_ASSIGN_OR_RETURN(const UcxListen where, ResolveUcxListen(config.ucx_listen, grpc_hp.first));
  ucx.net_devices = where.net_devices;
  spdlog::info("UCX data plane network: {}", where.description);
  return ucx;
}

// A UCX-allocated arena's System V segment is left 0600 by MemoryRegion::Allocate; --shm-mode
// 0660 opens it to the daemon's group. Arenas of other origins have no segment mode to set.
Status ApplyArenaShmMode(const std::byte* arena, uint32_t mode) {
  const std::string octal = fmt::format("0{:o}", mode);
  if (mode != 0600) {
    Status set = transfer::SetSysvSegmentMode(arena, mode);
    if (set.code() == StatusCode::kNotFound) spdlog::warn("--shm-mode {} not applied: the arena is not a System V segment", octal);
    else if (!set.ok()) return Status(set.code(), "--shm-mode " + octal + ": " + set.message());
  }
  if (Result<uint32_t> now = transfer::SysvSegmentMode(arena); now.ok()) {
    spdlog::info("DRAM arena: System V segment mode 0{:o} (who may map it: docs/SAME_HOST_TRUST.md)", *now);
  }
  return Status::Ok();
}

}  // namespace

// The UCX data plane, preferably over an arena UCX allocates itself: same-host peers then map it
// and move bytes with their own CPU. Failing that (shared-memory limits), the tier maps its own
// arena and RegisterDataPlane has UCX register it; peers' operations are then emulated through
// this daemon's progress thread.
Status Daemon::Impl::OpenDataPlaneArena(BuildState& build) {
  KVSTASH_ASSIGN_OR_RETURN(build.tier_options, config.TierOptions());
  KVSTASH_ASSIGN_OR_RETURN(build.ucx, DaemonUcxOptions(config));
  if (!config.tokens_file.empty()) {  // tenants exist: charge their blocks, hold them to their quotas
    KVSTASH_ASSIGN_OR_RETURN(tenants, TenantLedger::Create(config.quotas_file));
    build.tier_options.dram.quotas = &tenants->dram_quotas();
    if (build.tier_options.ssd) build.tier_options.ssd->quotas = &tenants->ssd_quotas();
  }
  // A region a UCX receive may still write into (a put's receive UCX matched and cannot cancel)
  // never goes back to the allocator: the peer's late bytes would land in another block. The
  // transfer server outlives the tier (declared before it).
  build.tier_options.dram.region_in_use = [this](uint64_t offset, uint64_t bytes) {
    transfer::TransferServer* server = receives_into_arena.load(std::memory_order_acquire);
    return server != nullptr && server->MayStillWrite(server->memory() + offset, bytes);
  };
  if (!config.ucx_enabled) return Status::Ok();
  Result<std::unique_ptr<transfer::TransferServer>> allocated =
      transfer::TransferServer::StartAllocated(build.ucx, config.dram_capacity, config.ucx_lanes);
  if (!allocated.ok()) {
    spdlog::warn("UCX could not allocate the arena ({}); registering a private one instead",
                 allocated.status().ToString());
    return Status::Ok();
  }
  transfer = std::move(*allocated);
  receives_into_arena.store(transfer.get(), std::memory_order_release);
  KVSTASH_RETURN_IF_ERROR(ApplyArenaShmMode(transfer->memory(), config.ucx_shm_mode));
  build.tier_options.dram.external_arena = transfer->memory();
  build.arena_kind = "UCX-allocated (peers map it)";
  return Status::Ok();
}

// The tiers: DRAM, plus HBM and SSD when configured. The HBM tier comes after the UCX context (it
// is probed with the same transports); its blocks are served through DRAM (TierManager,
// docs/GPU.md).
Status Daemon::Impl::OpenTiers(BuildState& build) {
  // Asked of the data plane's own context where there is one: a probe context opened and closed
  // beside it is what left UCX 1.13.1's cuda_ipc component with a freed md (docs/GPU.md).
  build.gpu_path = transfer ? gpu::ProbeGpuDataPath(transfer->push_context())
                            : gpu::ProbeGpuDataPath(config.ucx_transports);
  if (config.hbm_capacity > 0) {
    KVSTASH_ASSIGN_OR_RETURN(build.tier_options.hbm, MakeHbmFactory(config));
  }
  Result<std::unique_ptr<tiers::TierManager>> tier_manager = tiers::TierManager::Create(build.tier_options);
  if (!tier_manager.ok() && config.hbm_capacity > 0 && tier_manager.status().code() == StatusCode::kUnavailable) {
    return Status(tier_manager.status().code(),
                  "HBM tier (--hbm-capacity " + FormatBytes(config.hbm_capacity) + ", --gpu " +
                      std::to_string(config.gpu) + "): " + tier_manager.status().message());
  }
  KVSTASH_ASSIGN_OR_RETURN(tier, std::move(tier_manager));
  if (tenants) {  // tenants keep the owners their SSD blocks are charged to across restarts
    tiers::SsdTier* ssd = tier->ssd();
    std::vector<std::pair<tiers::OwnerId, std::string>> recovered;
    std::vector<tiers::OwnerId> in_use;
    TenantLedger::OwnerRecorder recorder;
    if (ssd != nullptr) {
      recovered = ssd->OwnerLabels();
      for (const tiers::OwnerUsage& u : ssd->OwnerUsages()) in_use.push_back(u.owner);
      recorder = [ssd](tiers::OwnerId owner, const std::string& tenant) { return ssd->LabelOwner(owner, tenant); };
    }
    tenants->AdoptOwners(recovered, in_use, std::move(recorder));
  }
  return Status::Ok();
}

// UCX over the tier's own arena, when UCX could not allocate one (OpenDataPlaneArena).
Status Daemon::Impl::RegisterDataPlane(BuildState& build) {
  if (!config.ucx_enabled || transfer) return Status::Ok();
  tiers::DramTier& dram = tier->dram();
  Result<std::unique_ptr<transfer::TransferServer>> registered =
      transfer::TransferServer::Start(build.ucx, dram.arena_base(), dram.arena_bytes(), config.ucx_lanes);
  if (!registered.ok()) {
    return Status(registered.status().code(), "UCX data plane: " + registered.status().message() +
                                                  " (start with --no-ucx to serve inline only)");
  }
  transfer = std::move(*registered);
  receives_into_arena.store(transfer.get(), std::memory_order_release);
  build.arena_kind = "private, UCX-registered";
  return Status::Ok();
}

// Makes the DRAM arena resident (--dram-prefault) and page-locked for GPU copies (with an HBM
// tier), logs what each tier is, and registers the server's metrics over them.
void Daemon::Impl::PrepareDram(const BuildState& build) {
  tiers::DramTier& dram = tier->dram();
  spdlog::info("DRAM tier: {} {} arena, {} pages, eviction policy {}", FormatBytes(dram.arena_bytes()),
               build.arena_kind, dram.huge_pages_active() ? "huge" : "regular", dram.policy_name());
  if (config.dram_prefault) {
    const auto t0 = std::chrono::steady_clock::now();
    tiers::PrefaultMemory(dram.arena_base(), dram.arena_bytes(), std::max(1u, std::thread::hardware_concurrency()));
    spdlog::info("DRAM arena made resident in {:.2f} s (--dram-prefault)",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (tier->hbm() != nullptr) {
    std::string why;
    dram_pinned_for_gpu = PinHostMemoryForGpu(dram.arena_base(), dram.arena_bytes(), why);
    if (!dram_pinned_for_gpu) {
      spdlog::warn("cannot page-lock the DRAM arena for GPU copies ({}); HBM copies go through driver staging", why);
    }
    spdlog::info("HBM tier: {} on GPU {} ({}), eviction policy {}; new blocks land there, victims are demoted "
                 "to DRAM, readers are served through DRAM{}",
                 FormatBytes(config.hbm_capacity), config.gpu, DescribeGpu(config.gpu), tier->hbm_policy_name(),
                 build.gpu_path.path == gpu::GpuDataPath::kDirect
                     ? " (UCX could reach GPU memory, but the HBM arena is not registered with it yet)"
                     : " (UCX cannot reach GPU memory here)");
  }
  if (tier->ssd() != nullptr) {
    tiers::TierUsage ssd;
    for (const tiers::TierUsageEntry& e : tier->UsageByTier()) {
      if (e.kind == tiers::TierKind::kSsd) ssd = e.usage;
    }
    spdlog::info("SSD tier: {} in {}, {} blocks ({}) recovered from it (DRAM victims are demoted there, hits "
                 "promoted back)",
                 FormatBytes(config.ssd_capacity), config.ssd_dir, ssd.blocks, FormatBytes(ssd.used_bytes));
  }
  server_metrics = std::make_unique<ServerMetrics>(registry, *tier, kVersion);
  if (tenants) tenant_metrics = std::make_unique<TenantMetrics>(registry, *tier, *tenants);
}

// The data plane as the Store service describes it to clients: UCX's address and keys (when on)
// and the way GPU memory would reach this daemon.
void Daemon::Impl::DescribeDataPlane(BuildState& build) {
  tiers::DramTier& dram = tier->dram();
  StoreServiceOptions& service_options = build.service_options;
  if (transfer) {
    service_options.data_plane.ucx = true;
    service_options.data_plane.transfer = transfer.get();
    service_options.data_plane.protocol = config.ucx_protocol;
    service_options.data_plane.worker_address = transfer->worker_address();
    service_options.data_plane.packed_rkey = transfer->packed_rkey();
    service_options.data_plane.transports = transfer->transports();
    service_options.data_plane.ucx_version = transfer::UcxContext::Version();
    service_options.data_plane.probe_addr = reinterpret_cast<uint64_t>(dram.arena_base());
    service_options.data_plane.region_bytes = dram.arena_bytes();
    std::random_device entropy;
    service_options.data_plane.instance_id = (static_cast<uint64_t>(entropy()) << 32 | entropy()) | 1;
    spdlog::info("UCX {} data plane on the DRAM arena (transports: {}; one-sided: {})",
                 service_options.data_plane.ucx_version, service_options.data_plane.transports,
                 transfer->serves_one_sided()
                     ? transfer->one_sided_transports() + ", same-host peers only"
                     : std::string("none, every peer is served two-sided"));
    server_metrics->WatchDataPlane(transfer.get());
  }
  ServeHbmDirect(build);
  // Which way GPU-resident KV would reach this daemon's memory.
  service_options.data_plane.gpu_data_path =
      std::string(gpu::ToString(build.gpu_path.path)) + ": " + build.gpu_path.reason;
  registry.AddGauge("kvstash_gpu_data_path", "How GPU memory reaches the store: direct (UCX) or staged; always 1.",
                    {"path"})
      .WithLabels({gpu::ToString(build.gpu_path.path)})
      .Set(1);
  spdlog::info("GPU data path: {}", service_options.data_plane.gpu_data_path);
}

// HBM blocks sent straight from GPU memory to device readers (docs/GPU.md "GPU-direct"): the HBM
// arena registered in the two-sided context, where that UCX moves CUDA memory.
void Daemon::Impl::ServeHbmDirect(BuildState& build) {
  DataPlaneInfo& dp = build.service_options.data_plane;
  if (tier->hbm() == nullptr) {
    // No HBM, but readers' CUDA buffers may still be written by the lanes (put-based rendezvous)
    // where this UCX moves CUDA memory: the lanes need a CUDA context for that.
    if (transfer && transfer->moves_device_memory()) transfer->BindLaneThreads(GpuThreadBinder(config.gpu));
    return;
  }
  auto staged = [&](const std::string& why) {
    dp.hbm_serving = "staged: " + why;
    spdlog::info("HBM tier served through DRAM: {}", why);
  };
  if (config.hbm_serving == HbmServing::kStaged) return staged("hbm.serving is staged");
  if (!transfer) return staged("no UCX data plane");
  if (config.ucx_protocol == DataPlaneProtocol::kOneSided) {
    return staged("the data plane is one-sided only (GPU memory is sent two-sided)");
  }
  const std::span<std::byte> arena = tier->hbm_arena();
  if (Status added = transfer->AddDeviceRegion(arena.data(), arena.size(), GpuThreadBinder(config.gpu)); !added.ok()) {
    return staged(added.message());
  }
  dp.hbm_region_base = reinterpret_cast<uint64_t>(arena.data());
  dp.hbm_region_bytes = arena.size();
  dp.hbm_serving = "direct: HBM blocks are sent from GPU memory to device readers (UCX " +
                   transfer::UcxContext::Version() + ")";
  spdlog::info("HBM tier: {}", dp.hbm_serving);
}

// The Store service and what it hands work to: the authorizer, the replicator, and (two-sided
// transfers) the read grants and eager put/get handlers.
Status Daemon::Impl::BuildStoreService(BuildState& build) {
  DescribeDataPlane(build);
  tiers::DramTier& dram = tier->dram();
  StoreServiceOptions& service_options = build.service_options;
  if (!config.tokens_file.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(authorizer,
                             auth::Authorizer::Create(config.tokens_file,
                                                {config.auth_failure_burst, config.auth_failure_refill_per_s}));
    service_options.authorizer = authorizer.get();
    service_options.tenants = tenants.get();
    // Two-sided reads then need a grant this daemon sealed (common/read_grant_seal.h).
    if (transfer && config.ucx_protocol != DataPlaneProtocol::kOneSided) {
      KVSTASH_ASSIGN_OR_RETURN(grant_sealer, ReadGrantSealer::Create());
      service_options.grant_sealer = grant_sealer.get();
    }
  }
  service_options.default_lease_ms = config.default_lease_ms;
  service_options.verify_sends = config.verify_sends;
  service_options.default_reservation_timeout_ms = config.reservation_timeout_ms;
  service_options.max_reservation_timeout_ms = config.max_reservation_timeout_ms;
  service_options.max_block_bytes = config.max_block;
  service_options.eviction_policy = std::string(dram.policy_name());
  service_options.huge_pages = dram.huge_pages_active();
  // member_id is filled in after binding, when the real port is known.
  if ((!config.standalone || !config.peers.empty()) && config.replicas > 1) {
    ReplicatorOptions replication = ReplicatorOptionsFor(config);
    if (!config.peer_token_file.empty()) {
      KVSTASH_ASSIGN_OR_RETURN(replication.peer_token, auth::ReadTokenFile(config.peer_token_file, "--peer-token-file"));
    }
    replicator = std::make_unique<Replicator>(std::move(replication), *tier, registry);
    service_options.access_hooks = replicator.get();
  }
  service = std::make_unique<StoreService>(service_options, *tier, *tier, *server_metrics);
  if (transfer && config.ucx_protocol != DataPlaneProtocol::kOneSided) {
    read_grants =
        std::make_unique<ReadGrantChecker>(*tier, SteadyClock::Default(), config.verify_sends, grant_sealer.get());
    if (service_options.data_plane.hbm_region_bytes > 0) {
      read_grants->SetDeviceArena(tier->hbm_arena(), tier->hbm(), tier->hbm_bytes());
    }
    transfer->SetSendAuthorizer(read_grants.get());
    transfer->SetSendTimeout(std::chrono::milliseconds(config.ucx_send_timeout_ms));
    // Eager requests arrive over UCX with no RPC, hence no token and no tenant to scope their key
    // to: with tokens on they are not served (clients then take the two-phase path, whose RPCs
    // are checked and whose reads carry sealed grants).
    if (!authorizer && config.ucx_eager_requests) {
      eager_puts = std::make_unique<EagerPutSink>(*tier, *server_metrics, config.max_block);
      transfer->SetPutSink(eager_puts.get(), std::chrono::milliseconds(config.reservation_timeout_ms));
      eager_gets = std::make_unique<EagerGetSource>(*tier, *server_metrics, config.default_lease_ms,
                                                    service_options.access_hooks, config.verify_sends);
      transfer->SetGetSource(eager_gets.get());
    }
  }
  return Status::Ok();
}

}  // namespace kvstash::server
