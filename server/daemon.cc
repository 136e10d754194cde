// Daemon: Start (its steps in order), the gRPC and metrics ports, cluster membership, token
// reloads and shutdown. The steps that build the data plane, the tiers and the Store service are in
// daemon_build_steps.cc; what they share is Daemon::Impl (daemon_impl.h).
#include "server/daemon.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "common/metrics.h"
#include "common/mutex.h"
#include "common/tls.h"
#include "kvstash/limits.h"
#include "server/cluster_registration.h"
#include "server/daemon_impl.h"
#include "server/security_mode.h"

namespace kvstash::server {
namespace daemon_internal {

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

}  // namespace daemon_internal

using daemon_internal::BuildState;
using daemon_internal::SplitHostPort;

Daemon::Daemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Daemon::~Daemon() {
  Shutdown();
  Wait();
}

Result<std::unique_ptr<Daemon>> Daemon::Start(const DaemonConfig& given) {
  KVSTASH_RETURN_IF_ERROR(given.Validate());
  auto impl = std::make_unique<Impl>();
  impl->config = given;
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
    auth::Authorizer* admitter = authorizer.get();
    metrics_options.auth.bearer = [admitter](const std::string& peer, std::string_view authorization) {
      return admitter->AdmitFromAddress(peer, authorization, auth::Role::kAdmin).status();
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
  KVSTASH_RETURN_IF_ERROR(impl_->authorizer->Reload());
  if (impl_->tenants) {
    if (Status quotas = impl_->tenants->Reload(); !quotas.ok()) {
      return Status(quotas.code(), "tokens reloaded, quotas not: " + quotas.message());
    }
  }
  return Status::Ok();
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
