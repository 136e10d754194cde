#include "server/daemon.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <random>
#include <thread>

#include "common/metrics.h"
#include "common/mutex.h"
#include "common/tls.h"
#include "common/units.h"
#include "gpu/gpu_data_path.h"
#include "kvstash/limits.h"
#include "server/authorizer.h"
#include "server/cluster_registration.h"
#include "server/eager_get_source.h"
#include "server/eager_put_sink.h"
#include "server/hbm_setup.h"
#include "server/security_mode.h"
#include "server/server_metrics.h"
#include "server/store_service.h"
#include "server/ucx_listen.h"
#include "server/version.h"
#include "tiers/arena.h"
#include "tiers/dram_tier.h"
#include "tiers/tier_manager.h"
#include "transfer/transfer_server.h"

namespace kvstash::server {
namespace {

// "host:port" -> {host, port}; INVALID_ARGUMENT when malformed.
Result<std::pair<std::string, int>> SplitHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return InvalidArgument("address must be HOST:PORT: " + address);
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text = address.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos) {
    return InvalidArgument("address must be HOST:PORT: " + address);
  }
  const int port = std::stoi(port_text);
  if (port > 65535) return InvalidArgument("port out of range: " + address);
  return std::make_pair(host, port);
}

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

// What Daemon::Start's steps hand each other and do not keep.
struct BuildState {
  tiers::TierManagerOptions tier_options;
  transfer::UcxOptions ucx;
  std::string arena_kind = "private";
  gpu::GpuDataPathReport gpu_path;
  StoreServiceOptions service_options;
  std::string advertised_grpc;  // the gRPC address peers dial (known once bound)
};

}  // namespace

struct Daemon::Impl {
  DaemonConfig config;
  // Declared before the tier so that it is destroyed after it: the tier may live in its memory.
  std::unique_ptr<transfer::TransferServer> transfer;  // null when UCX is off
  // `transfer`, once it exists, for the DRAM tier's region_in_use (the tier may be opened first).
  std::atomic<transfer::TransferServer*> receives_into_arena{nullptr};
  std::unique_ptr<tiers::TierManager> tier;  // DRAM, plus HBM and SSD when configured
  std::shared_ptr<void> dram_pinned_for_gpu;  // page-locks the DRAM arena; released before the tier
  metrics::Registry registry;
  std::unique_ptr<ServerMetrics> server_metrics;
  std::unique_ptr<Replicator> replicator;  // hot-block copies; null when standalone or off
  std::unique_ptr<Authorizer> authorizer;  // null without a tokens file; declared first: outlives the service
  std::unique_ptr<StoreService> service;
  std::unique_ptr<ReadGrantChecker> read_grants;  // authorises two-sided reads; used by transfer's thread
  std::unique_ptr<EagerPutSink> eager_puts;       // stores eager puts; used by transfer's thread
  std::unique_ptr<EagerGetSource> eager_gets;     // finds blocks for eager gets; used by transfer's thread
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<metrics::MetricsHttpServer> metrics_server;
  std::unique_ptr<membership::Registrar> registrar;  // null when standalone
  std::string grpc_address;
  std::string metrics_address;

  Mutex mu;
  std::condition_variable cv;
  bool stopping GUARDED_BY(mu) = false;
  bool stopped GUARDED_BY(mu) = false;
  std::thread reaper;

  // The transfer thread consults read_grants, eager_puts, eager_gets and the tier: stop it before either goes away, also
  // when Start fails half-way.
  ~Impl() {
    if (transfer) transfer->Stop();
  }

  void ReaperLoop() {
    MutexLock lock(mu);
    while (!stopping) {
      lock.WaitFor(cv, std::chrono::milliseconds(config.reaper_interval_ms), [this] { mu.AssertHeld(); return stopping; });
      if (stopping) break;
      lock.Unlock();
      const size_t reclaimed = tier->ReclaimExpired();
      if (reclaimed > 0) spdlog::info("reclaimed {} expired put reservations", reclaimed);
      lock.Lock();
    }
  }

  // Start's build steps, in the order Start calls them. Each fills its part of this Impl (and of
  // `build`, what later steps need) and returns the first error; Start stops at it, and what was
  // built is torn down by Start's unwinding and this Impl's destructor.
  Status OpenDataPlaneArena(BuildState& build);
  Status OpenTiers(BuildState& build);
  Status RegisterDataPlane(BuildState& build);
  void PrepareDram(const BuildState& build);
  void DescribeDataPlane(BuildState& build);
  Status BuildStoreService(BuildState& build);
  Status StartGrpc(BuildState& build);
  Status StartMetrics();
  Status JoinCluster(const BuildState& build);
  void StartReaper();
};

Daemon::Daemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Daemon::~Daemon() {
  Shutdown();
  Wait();
}

Result<std::unique_ptr<Daemon>> Daemon::Start(const DaemonConfig& given) {
  KVSTASH_RETURN_IF_ERROR(given.Validate());
  auto impl = std::make_unique<Impl>();
  impl->config = WithSecurityDefaults(given);
  BuildState build;
  KVSTASH_RETURN_IF_ERROR(impl->OpenDataPlaneArena(build));
  KVSTASH_RETURN_IF_ERROR(impl->OpenTiers(build));
  KVSTASH_RETURN_IF_ERROR(impl->RegisterDataPlane(build));
  impl->PrepareDram(build);
  KVSTASH_RETURN_IF_ERROR(impl->BuildStoreService(build));
  KVSTASH_RETURN_IF_ERROR(impl->StartGrpc(build));
  if (Status st = impl->StartMetrics(); !st.ok()) {
    impl->grpc_server->Shutdown();
    return st;
  }
  if (Status st = impl->JoinCluster(build); !st.ok()) {  // only once both ports serve
    impl->metrics_server->Stop();
    impl->grpc_server->Shutdown();
    return st;
  }
  impl->StartReaper();
  return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
}

// The UCX data plane, preferably over an arena UCX allocates itself: same-host peers then map it
// and move bytes with their own CPU. Failing that (shared-memory limits), the tier maps its own
// arena and RegisterDataPlane has UCX register it; peers' operations are then emulated through
// this daemon's progress thread.
Status Daemon::Impl::OpenDataPlaneArena(BuildState& build) {
  KVSTASH_ASSIGN_OR_RETURN(build.tier_options, config.TierOptions());
  KVSTASH_ASSIGN_OR_RETURN(build.ucx, DaemonUcxOptions(config));
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
  build.gpu_path = gpu::ProbeGpuDataPath(config.ucx_transports);
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
}

// The data plane as the Store service describes it to clients: UCX's address and keys (when on)
// and the way GPU memory would reach this daemon.
void Daemon::Impl::DescribeDataPlane(BuildState& build) {
  tiers::DramTier& dram = tier->dram();
  StoreServiceOptions& service_options = build.service_options;
  if (transfer) {
    service_options.data_plane.ucx = true;
    service_options.data_plane.transfer = transfer.get();
    service_options.data_plane.protocol = std::string(Name(config.ucx_protocol));
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
  // Which way GPU-resident KV would reach this daemon's memory.
  service_options.data_plane.gpu_data_path =
      std::string(gpu::ToString(build.gpu_path.path)) + ": " + build.gpu_path.reason;
  registry.AddGauge("kvstash_gpu_data_path", "How GPU memory reaches the store: direct (UCX) or staged; always 1.",
                    {"path"})
      .WithLabels({gpu::ToString(build.gpu_path.path)})
      .Set(1);
  spdlog::info("GPU data path: {}", service_options.data_plane.gpu_data_path);
}

// The Store service and what it hands work to: the authorizer, the replicator, and (two-sided
// transfers) the read grants and eager put/get handlers.
Status Daemon::Impl::BuildStoreService(BuildState& build) {
  DescribeDataPlane(build);
  tiers::DramTier& dram = tier->dram();
  StoreServiceOptions& service_options = build.service_options;
  if (!config.tokens_file.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(authorizer,
                             Authorizer::Create(config.tokens_file,
                                                {config.auth_failure_burst, config.auth_failure_refill_per_s}));
    service_options.authorizer = authorizer.get();
  }
  service_options.default_lease_ms = config.default_lease_ms;
  service_options.verify_sends = config.verify_sends;
  service_options.default_reservation_timeout_ms = config.reservation_timeout_ms;
  service_options.max_block_bytes = config.max_block;
  service_options.eviction_policy = std::string(dram.policy_name());
  service_options.huge_pages = dram.huge_pages_active();
  // member_id is filled in after binding, when the real port is known.
  if ((!config.standalone || !config.peers.empty()) && config.replicas > 1) {
    replicator = std::make_unique<Replicator>(ReplicatorOptionsFor(config), *tier, registry);
    service_options.access_hooks = replicator.get();
  }
  service = std::make_unique<StoreService>(service_options, *tier, *tier, *server_metrics);
  if (transfer && config.ucx_protocol != DataPlaneProtocol::kOneSided) {
    read_grants = std::make_unique<ReadGrantChecker>(*tier, SteadyClock::Default(), config.verify_sends);
    transfer->SetSendAuthorizer(read_grants.get());
    transfer->SetSendTimeout(std::chrono::milliseconds(config.ucx_send_timeout_ms));
    // Eager requests arrive over UCX with no RPC, hence no token: with tokens on they are not served
    // (clients then take the two-phase path, whose RPCs are checked).
    if (!authorizer) {
      eager_puts = std::make_unique<EagerPutSink>(*tier, *server_metrics, config.max_block);
      transfer->SetPutSink(eager_puts.get(), std::chrono::milliseconds(config.reservation_timeout_ms));
      eager_gets = std::make_unique<EagerGetSource>(*tier, *server_metrics, config.default_lease_ms,
                                                    service_options.access_hooks, config.verify_sends);
      transfer->SetGetSource(eager_gets.get());
    }
  }
  return Status::Ok();
}

// gRPC: a sync server whose thread pool is bounded by the resource quota (config.threads). Once
// bound, the member id is known and the replicator starts.
Status Daemon::Impl::StartGrpc(BuildState& build) {
  KVSTASH_ASSIGN_OR_RETURN(auto grpc_hp, SplitHostPort(config.listen));
  grpc::ServerBuilder builder;
  int bound_port = 0;
  KVSTASH_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                           tls::MakeServerCredentials({config.tls_cert, config.tls_key, config.tls_client_ca, config.tls_reload_s}));
  builder.AddListeningPort(config.listen, credentials, &bound_port);
  spdlog::info("gRPC security: {}", DescribeSecurity(config));
  for (const std::string& warning : SecurityWarnings(config, grpc_hp.first)) spdlog::warn("{}", warning);
  // gRPC sets SO_REUSEPORT by default: a second daemon on the same port would then start, share
  // the port and take over this member's etcd record. Refuse a port in use instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(limits::kMaxGrpcMessageBytes));
  builder.SetMaxSendMessageSize(static_cast<int>(limits::kMaxGrpcMessageBytes));
  grpc::ResourceQuota quota("kvstashd");
  quota.SetMaxThreads(static_cast<int>(config.threads) + 2);
  builder.SetResourceQuota(quota);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
  // Pollers wait for new RPCs; handler threads (up to the quota) serve them.
  const int pollers = static_cast<int>(std::max(1u, std::min(config.threads, std::thread::hardware_concurrency())));
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, pollers);
  builder.RegisterService(service.get());
  grpc_server = builder.BuildAndStart();
  if (!grpc_server || bound_port == 0) {
    return Unavailable("cannot listen for gRPC on " + config.listen + " (in use by another process?)");
  }
  grpc_address = grpc_hp.first + ":" + std::to_string(bound_port);
  build.advertised_grpc = AdvertisedAddress(config, grpc_address);
  build.service_options.member_id = config.member_id.empty() ? build.advertised_grpc : config.member_id;
  service->SetMemberId(build.service_options.member_id);
  if (replicator) {
    if (Status st = replicator->Start(build.service_options.member_id); !st.ok()) {
      grpc_server->Shutdown();
      return st;
    }
  }
  return Status::Ok();
}

// /metrics and /healthz, with the counters of connections the endpoint closed early.
Status Daemon::Impl::StartMetrics() {
  KVSTASH_ASSIGN_OR_RETURN(auto metrics_hp, SplitHostPort(config.metrics_listen));
  metrics::MetricsHttpOptions metrics_options;
  metrics_options.tls = {config.metrics_tls_cert, config.metrics_tls_key, config.metrics_tls_client_ca,
                         config.tls_reload_s};
  metrics_options.auth.basic_auth_file = config.metrics_basic_auth_file;
  if (authorizer) {
    // With tokens on, /metrics takes an admin's bearer token (or the basic-auth users); failures
    // count against the peer's budget like the gRPC port's.
    Authorizer* admitter = authorizer.get();
    metrics_options.auth.bearer = [admitter](const std::string& peer, std::string_view authorization) {
      const std::string grpc_peer = (peer.find(':') != std::string::npos ? "ipv6:[" + peer + "]" : "ipv4:" + peer) + ":0";
      return admitter->Admit(grpc_peer, authorization, auth::Role::kAdmin).status();
    };
  }
  if (!config.metrics_tls_cert.empty()) {
    spdlog::info("/metrics over HTTPS{}", config.metrics_tls_client_ca.empty() ? "" : " with client certificates");
  } else if (!tls::IsLoopbackHost(metrics_hp.first)) {
    spdlog::warn("/metrics and /healthz listen in plaintext HTTP on {}, not loopback: their counters are readable "
                 "on the path (--metrics-tls-cert)",
                 config.metrics_listen);
  }
  metrics_server = std::make_unique<metrics::MetricsHttpServer>(&registry, std::move(metrics_options));
  KVSTASH_ASSIGN_OR_RETURN(const int metrics_port, metrics_server->Start(metrics_hp.first, metrics_hp.second));
  metrics_address = metrics_hp.first + ":" + std::to_string(metrics_port);
  {
    // Connections the metrics endpoint closed early (slow heads, the connection cap): issue 17.
    auto& closed = registry.AddCounter(
        "kvstash_metrics_http_connections_closed_total",
        "Connections the /metrics endpoint closed before serving them, by reason (head_timeout: request head or "
        "TLS handshake not complete in time; evicted: closed at the connection cap for a newer one; refused: at the "
        "cap with none to close; bad_head: too large, or a failed TLS handshake).",
        {"reason"});
    struct Seen {
      Mutex mu;  // scrapes may render concurrently
      HttpCounters counters;
    };
    auto seen = std::make_shared<Seen>();
    metrics::MetricsHttpServer* server = metrics_server.get();
    registry.AddCollector([&closed, seen, server] {
      MutexLock lock(seen->mu);
      const HttpCounters now = server->counters();
      const HttpCounters& last = seen->counters;
      closed.WithLabels({"head_timeout"}).Inc(static_cast<double>(now.head_timeouts - last.head_timeouts));
      closed.WithLabels({"evicted"}).Inc(static_cast<double>(now.evicted - last.evicted));
      closed.WithLabels({"refused"}).Inc(static_cast<double>(now.refused - last.refused));
      closed.WithLabels({"bad_head"}).Inc(static_cast<double>(now.bad_heads - last.bad_heads));
      seen->counters = now;
    });
  }
  return Status::Ok();
}

// Registers this member in etcd (not standalone); the service then follows the member set.
Status Daemon::Impl::JoinCluster(const BuildState& build) {
  if (config.standalone) return Status::Ok();
  KVSTASH_ASSIGN_OR_RETURN(registrar, RegisterMember(config, {build.service_options.member_id, build.advertised_grpc,
                                                              AdvertisedAddress(config, metrics_address),
                                                              build.service_options.data_plane.worker_address}));
  service->SetMembershipSource(WatchRegistration(registry, *registrar));
  return Status::Ok();
}

void Daemon::Impl::StartReaper() {
  reaper = std::thread([this] { ReaperLoop(); });
}

Status Daemon::ReloadTokens() {
  if (!impl_->authorizer) return FailedPrecondition("no tokens file is configured (--tokens-file)");
  return impl_->authorizer->Reload();
}

const std::string& Daemon::grpc_address() const { return impl_->grpc_address; }
const std::string& Daemon::metrics_address() const { return impl_->metrics_address; }

void Daemon::Shutdown() {
  {
    MutexLock lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  // Leave the member set first, so that clients stop routing here while in-flight calls finish.
  if (impl_->registrar) impl_->registrar->Stop();
  if (impl_->replicator) impl_->replicator->Stop();
  // gRPC's graceful shutdown also waits out idle client connections until the deadline; so wait
  // for the handlers that are running (up to 5 s), then shut down at once.
  const auto grace_end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (impl_->service->InFlight() > 0 && std::chrono::steady_clock::now() < grace_end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl_->grpc_server->Shutdown(std::chrono::system_clock::now());
  impl_->metrics_server->Stop();
  if (impl_->reaper.joinable()) impl_->reaper.join();
  if (impl_->transfer) impl_->transfer->Stop();
  {
    MutexLock lock(impl_->mu);
    impl_->stopped = true;
  }
  impl_->cv.notify_all();
}

void Daemon::Wait() {
  MutexLock lock(impl_->mu);
  lock.Wait(impl_->cv, [this] { impl_->mu.AssertHeld(); return impl_->stopped; });
}

}  // namespace kvstash::server
