// Daemon::Impl: what a running daemon owns, and the steps Daemon::Start builds it with. Shared by
// daemon.cc (Start, the gRPC and metrics ports, cluster membership, shutdown) and
// daemon_build_steps.cc (the data plane, the tiers and the Store service); not part of the
// daemon's interface.
#pragma once

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "common/metrics.h"
#include "common/mutex.h"
#include "gpu/gpu_data_path.h"
#include "common/authorizer.h"
#include "server/tenant_ledger.h"
#include "server/tenant_metrics.h"
#include "server/cluster_registration.h"
#include "server/daemon.h"
#include "server/eager_get_source.h"
#include "server/eager_put_sink.h"
#include "server/server_metrics.h"
#include "server/store_service.h"
#include "tiers/tier_manager.h"
#include "transfer/transfer_server.h"

namespace kvstash::server {
namespace daemon_internal {

// "host:port" -> {host, port}; INVALID_ARGUMENT when malformed.
Result<std::pair<std::string, int>> SplitHostPort(const std::string& address);

// What Daemon::Start's steps hand each other and do not keep.
struct BuildState {
  tiers::TierManagerOptions tier_options;
  transfer::UcxOptions ucx;
  std::string arena_kind = "private";
  gpu::GpuDataPathReport gpu_path;
  StoreServiceOptions service_options;
  std::string advertised_grpc;  // the gRPC address peers dial (known once bound)
};

}  // namespace daemon_internal

struct Daemon::Impl {
  DaemonConfig config;
  // Declared before the tier so that it is destroyed after it: the tier may live in its memory.
  std::unique_ptr<transfer::TransferServer> transfer;  // null when UCX is off
  // `transfer`, once it exists, for the DRAM tier's region_in_use (the tier may be opened first).
  std::atomic<transfer::TransferServer*> receives_into_arena{nullptr};
  std::unique_ptr<TenantLedger> tenants;  // with a tokens file; declared first: outlives the tier
  std::unique_ptr<tiers::TierManager> tier;  // DRAM, plus HBM and SSD when configured
  std::shared_ptr<void> dram_pinned_for_gpu;  // page-locks the DRAM arena; released before the tier
  metrics::Registry registry;
  std::unique_ptr<ServerMetrics> server_metrics;
  std::unique_ptr<TenantMetrics> tenant_metrics;  // with tenants
  std::unique_ptr<Replicator> replicator;  // hot-block copies; null when standalone or off
  std::unique_ptr<auth::Authorizer> authorizer;  // null without a tokens file; declared first: outlives the service
  std::unique_ptr<StoreService> service;
  std::unique_ptr<ReadGrantSealer> grant_sealer;  // tokens and two-sided transfers on; outlives service and checker
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

  using BuildState = daemon_internal::BuildState;

  // Start's build steps, in the order Start calls them. Each fills its part of this Impl (and of
  // `build`, what later steps need) and returns the first error; Start stops at it, and what was
  // built is torn down by Start's unwinding and this Impl's destructor.
  Status OpenDataPlaneArena(BuildState& build);
  Status OpenTiers(BuildState& build);
  Status RegisterDataPlane(BuildState& build);
  void PrepareDram(const BuildState& build);
  void DescribeDataPlane(BuildState& build);
  void ServeHbmDirect(BuildState& build);
  Status BuildStoreService(BuildState& build);
  Status StartGrpc(BuildState& build);
  Status StartMetrics();
  Status JoinCluster(const BuildState& build);
  void StartReaper();
};

}  // namespace kvstash::server
