#include "server/daemon.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <spdlog/spdlog.h>

#include <algorithm>
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

}  // namespace

struct Daemon::Impl {
  DaemonConfig config;
  // Declared before the tier so that it is destroyed after it: the tier may live in its memory.
  std::unique_ptr<transfer::TransferServer> transfer;  // null when UCX is off
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
};

Daemon::Daemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Daemon::~Daemon() {
  Shutdown();
  Wait();
}

Result<std::unique_ptr<Daemon>> Daemon::Start(const DaemonConfig& given) {
  KVSTASH_RETURN_IF_ERROR(given.Validate());
  const DaemonConfig config = WithSecurityDefaults(given);
  auto impl = std::make_unique<Impl>();
  impl->config = config;

  KVSTASH_ASSIGN_OR_RETURN(tiers::TierManagerOptions tier_options, config.TierOptions());
  tiers::DramTierOptions& dram_options = tier_options.dram;
  // The UCX data plane, preferably over an arena UCX allocates itself: same-host peers then map
  // it and move bytes with their own CPU. Failing that (shared-memory limits), the tier maps its
  // own arena and UCX registers it; peers' operations are then emulated through this daemon's
  // progress thread.
  KVSTASH_ASSIGN_OR_RETURN(const transfer::UcxOptions ucx, DaemonUcxOptions(config));
  std::string arena_kind = "private";
  if (config.ucx_enabled) {
    Result<std::unique_ptr<transfer::TransferServer>> allocated =
        transfer::TransferServer::StartAllocated(ucx, config.dram_capacity, config.ucx_lanes);
    if (allocated.ok()) {
      impl->transfer = std::move(*allocated);
      KVSTASH_RETURN_IF_ERROR(ApplyArenaShmMode(impl->transfer->memory(), config.ucx_shm_mode));
      dram_options.external_arena = impl->transfer->memory();
      arena_kind = "UCX-allocated (peers map it)";
    } else {
      spdlog::warn("UCX could not allocate the arena ({}); registering a private one instead",
                   allocated.status().ToString());
    }
  }
  // The HBM tier, after the UCX context (it is probed with the same transports below). Its blocks
  // are served through DRAM: see TierManager and docs/GPU.md.
  const gpu::GpuDataPathReport gpu_path = gpu::ProbeGpuDataPath(config.ucx_transports);
  if (config.hbm_capacity > 0) {
    KVSTASH_ASSIGN_OR_RETURN(tier_options.hbm, MakeHbmFactory(config));
  }
  Result<std::unique_ptr<tiers::TierManager>> tier_manager = tiers::TierManager::Create(tier_options);
  if (!tier_manager.ok() && config.hbm_capacity > 0 && tier_manager.status().code() == StatusCode::kUnavailable) {
    return Status(tier_manager.status().code(),
                  "HBM tier (--hbm-capacity " + FormatBytes(config.hbm_capacity) + ", --gpu " +
                      std::to_string(config.gpu) + "): " + tier_manager.status().message());
  }
  KVSTASH_ASSIGN_OR_RETURN(impl->tier, std::move(tier_manager));
  tiers::DramTier& dram = impl->tier->dram();
  if (config.ucx_enabled && !impl->transfer) {
    Result<std::unique_ptr<transfer::TransferServer>> registered =
        transfer::TransferServer::Start(ucx, dram.arena_base(), dram.arena_bytes(), config.ucx_lanes);
    if (!registered.ok()) {
      return Status(registered.status().code(), "UCX data plane: " + registered.status().message() +
                                                    " (start with --no-ucx to serve inline only)");
    }
    impl->transfer = std::move(*registered);
    arena_kind = "private, UCX-registered";
  }
  spdlog::info("DRAM tier: {} {} arena, {} pages, eviction policy {}", FormatBytes(dram.arena_bytes()), arena_kind,
               dram.huge_pages_active() ? "huge" : "regular", dram.policy_name());
  if (config.dram_prefault) {
    const auto t0 = std::chrono::steady_clock::now();
    tiers::PrefaultMemory(dram.arena_base(), dram.arena_bytes(), std::max(1u, std::thread::hardware_concurrency()));
    spdlog::info("DRAM arena made resident in {:.2f} s (--dram-prefault)",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (impl->tier->hbm() != nullptr) {
    std::string why;
    impl->dram_pinned_for_gpu = PinHostMemoryForGpu(dram.arena_base(), dram.arena_bytes(), why);
    if (!impl->dram_pinned_for_gpu) {
      spdlog::warn("cannot page-lock the DRAM arena for GPU copies ({}); HBM copies go through driver staging", why);
    }
    spdlog::info("HBM tier: {} on GPU {} ({}), eviction policy {}; new blocks land there, victims are demoted "
                 "to DRAM, readers are served through DRAM{}",
                 FormatBytes(config.hbm_capacity), config.gpu, DescribeGpu(config.gpu), impl->tier->hbm_policy_name(),
                 gpu_path.path == gpu::GpuDataPath::kDirect
                     ? " (UCX could reach GPU memory, but the HBM arena is not registered with it yet)"
                     : " (UCX cannot reach GPU memory here)");
  }
  if (impl->tier->ssd() != nullptr) {
    tiers::TierUsage ssd;
    for (const tiers::TierUsageEntry& e : impl->tier->UsageByTier()) {
      if (e.kind == tiers::TierKind::kSsd) ssd = e.usage;
    }
    spdlog::info("SSD tier: {} in {}, {} blocks ({}) recovered from it (DRAM victims are demoted there, hits "
                 "promoted back)",
                 FormatBytes(config.ssd_capacity), config.ssd_dir, ssd.blocks, FormatBytes(ssd.used_bytes));
  }
  impl->server_metrics = std::make_unique<ServerMetrics>(impl->registry, *impl->tier, kVersion);

  // gRPC: sync server; its thread pool is bounded by the resource quota (config.threads).
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

  StoreServiceOptions service_options;
  if (impl->transfer) {
    service_options.data_plane.ucx = true;
    service_options.data_plane.transfer = impl->transfer.get();
    service_options.data_plane.protocol = config.ucx_protocol;
    service_options.data_plane.worker_address = impl->transfer->worker_address();
    service_options.data_plane.packed_rkey = impl->transfer->packed_rkey();
    service_options.data_plane.transports = impl->transfer->transports();
    service_options.data_plane.ucx_version = transfer::UcxContext::Version();
    service_options.data_plane.probe_addr = reinterpret_cast<uint64_t>(dram.arena_base());
    service_options.data_plane.region_bytes = dram.arena_bytes();
    std::random_device entropy;
    service_options.data_plane.instance_id = (static_cast<uint64_t>(entropy()) << 32 | entropy()) | 1;
    spdlog::info("UCX {} data plane on the DRAM arena (transports: {}; one-sided: {})",
                 service_options.data_plane.ucx_version, service_options.data_plane.transports,
                 impl->transfer->serves_one_sided()
                     ? impl->transfer->one_sided_transports() + ", same-host peers only"
                     : std::string("none, every peer is served two-sided"));
    impl->server_metrics->WatchDataPlane(impl->transfer.get());
  }
  {
    // Which way GPU-resident KV would reach this daemon's memory.
    service_options.data_plane.gpu_data_path = std::string(gpu::ToString(gpu_path.path)) + ": " + gpu_path.reason;
    impl->registry.AddGauge("kvstash_gpu_data_path", "How GPU memory reaches the store: direct (UCX) or staged; always 1.",
                            {"path"})
        .WithLabels({gpu::ToString(gpu_path.path)})
        .Set(1);
    spdlog::info("GPU data path: {}", service_options.data_plane.gpu_data_path);
  }
  if (!config.tokens_file.empty()) {
    KVSTASH_ASSIGN_OR_RETURN(impl->authorizer,
                             Authorizer::Create(config.tokens_file,
                                                {config.auth_failure_burst, config.auth_failure_refill_per_s}));
    service_options.authorizer = impl->authorizer.get();
  }
  service_options.default_lease_ms = config.default_lease_ms;
  service_options.verify_sends = config.verify_sends;
  service_options.default_reservation_timeout_ms = config.reservation_timeout_ms;
  service_options.max_block_bytes = config.max_block;
  service_options.eviction_policy = std::string(dram.policy_name());
  service_options.huge_pages = dram.huge_pages_active();
  // member_id is filled in after binding, when the real port is known.
  if ((!config.standalone || !config.peers.empty()) && config.replicas > 1) {
    impl->replicator = std::make_unique<Replicator>(ReplicatorOptionsFor(config), *impl->tier, impl->registry);
    service_options.access_hooks = impl->replicator.get();
  }
  impl->service = std::make_unique<StoreService>(service_options, *impl->tier, *impl->tier, *impl->server_metrics);
  if (impl->transfer && config.ucx_protocol != "one-sided") {
    impl->read_grants = std::make_unique<ReadGrantChecker>(*impl->tier, SteadyClock::Default(), config.verify_sends);
    impl->transfer->SetSendAuthorizer(impl->read_grants.get());
    impl->transfer->SetSendTimeout(std::chrono::milliseconds(config.ucx_send_timeout_ms));
    // Eager requests arrive over UCX with no RPC, hence no token: with tokens on they are not served
    // (clients then take the two-phase path, whose RPCs are checked).
    if (!impl->authorizer) {
      impl->eager_puts = std::make_unique<EagerPutSink>(*impl->tier, *impl->server_metrics, config.max_block);
      impl->transfer->SetPutSink(impl->eager_puts.get(), std::chrono::milliseconds(config.reservation_timeout_ms));
      impl->eager_gets = std::make_unique<EagerGetSource>(*impl->tier, *impl->server_metrics, config.default_lease_ms,
                                                          service_options.access_hooks, config.verify_sends);
      impl->transfer->SetGetSource(impl->eager_gets.get());
    }
  }
  builder.RegisterService(impl->service.get());
  impl->grpc_server = builder.BuildAndStart();
  if (!impl->grpc_server || bound_port == 0) {
    return Unavailable("cannot listen for gRPC on " + config.listen + " (in use by another process?)");
  }
  impl->grpc_address = grpc_hp.first + ":" + std::to_string(bound_port);
  const std::string advertised_grpc = AdvertisedAddress(config, impl->grpc_address);
  service_options.member_id = config.member_id.empty() ? advertised_grpc : config.member_id;
  impl->service->SetMemberId(service_options.member_id);
  if (impl->replicator) {
    if (Status st = impl->replicator->Start(service_options.member_id); !st.ok()) {
      impl->grpc_server->Shutdown();
      return st;
    }
  }

  KVSTASH_ASSIGN_OR_RETURN(auto metrics_hp, SplitHostPort(config.metrics_listen));
  metrics::MetricsHttpOptions metrics_options;
  metrics_options.tls = {config.metrics_tls_cert, config.metrics_tls_key, config.metrics_tls_client_ca,
                         config.tls_reload_s};
  metrics_options.auth.basic_auth_file = config.metrics_basic_auth_file;
  if (impl->authorizer) {
    // With tokens on, /metrics takes an admin's bearer token (or the basic-auth users); failures
    // count against the peer's budget like the gRPC port's.
    Authorizer* authorizer = impl->authorizer.get();
    metrics_options.auth.bearer = [authorizer](const std::string& peer, std::string_view authorization) {
      const std::string grpc_peer = (peer.find(':') != std::string::npos ? "ipv6:[" + peer + "]" : "ipv4:" + peer) + ":0";
      return authorizer->Admit(grpc_peer, authorization, auth::Role::kAdmin).status();
    };
  }
  if (!config.metrics_tls_cert.empty()) {
    spdlog::info("/metrics over HTTPS{}", config.metrics_tls_client_ca.empty() ? "" : " with client certificates");
  } else if (!tls::IsLoopbackHost(metrics_hp.first)) {
    spdlog::warn("/metrics and /healthz listen in plaintext HTTP on {}, not loopback: their counters are readable "
                 "on the path (--metrics-tls-cert)",
                 config.metrics_listen);
  }
  impl->metrics_server = std::make_unique<metrics::MetricsHttpServer>(&impl->registry, std::move(metrics_options));
  Result<int> metrics_port = impl->metrics_server->Start(metrics_hp.first, metrics_hp.second);
  if (!metrics_port.ok()) {
    impl->grpc_server->Shutdown();
    return metrics_port.status();
  }
  impl->metrics_address = metrics_hp.first + ":" + std::to_string(*metrics_port);
  {
    // Connections the metrics endpoint closed early (slow heads, the connection cap): issue 17.
    auto& closed = impl->registry.AddCounter(
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
    metrics::MetricsHttpServer* server = impl->metrics_server.get();
    impl->registry.AddCollector([&closed, seen, server] {
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

  if (!config.standalone) {  // join the cluster only once both ports serve
    Result<std::unique_ptr<membership::Registrar>> registrar =
        RegisterMember(config, {service_options.member_id, advertised_grpc,
                                AdvertisedAddress(config, impl->metrics_address),
                                service_options.data_plane.worker_address});
    if (!registrar.ok()) {
      impl->metrics_server->Stop();
      impl->grpc_server->Shutdown();
      return registrar.status();
    }
    impl->registrar = std::move(*registrar);
    impl->service->SetMembershipSource(WatchRegistration(impl->registry, *impl->registrar));
  }

  Impl* raw = impl.get();
  impl->reaper = std::thread([raw] { raw->ReaperLoop(); });
  return std::unique_ptr<Daemon>(new Daemon(std::move(impl)));
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
