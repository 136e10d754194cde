#include "server/cluster_registration.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>

#include "server/version.h"

namespace kvstash::server {
namespace {

bool IsWildcard(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]";
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

std::string AdvertisedAddress(const DaemonConfig& config, const std::string& bound) {
  const size_t colon = bound.rfind(':');
  if (colon == std::string::npos) return bound;
  const std::string host = bound.substr(0, colon);
  const std::string port = bound.substr(colon);  // ":PORT"
  if (!config.advertise.empty()) {
    const bool ipv6 = config.advertise.find(':') != std::string::npos;
    return (ipv6 ? "[" + config.advertise + "]" : config.advertise) + port;
  }
  return IsWildcard(host) ? HostName() + port : bound;
}

Result<std::unique_ptr<membership::Registrar>> RegisterMember(const DaemonConfig& config,
                                                              const BoundAddresses& bound) {
  membership::RegistrarOptions options;
  options.etcd.endpoints = config.etcd_endpoints;
  options.etcd.ca_file = config.etcd_ca;
  options.etcd.cert_file = config.etcd_cert;
  options.etcd.key_file = config.etcd_key;
  options.cluster = config.cluster;
  options.lease_ttl_s = config.lease_ttl_s;
  membership::MemberRecord& r = options.record;
  r.id = bound.member_id;
  r.grpc_address = bound.grpc;
  r.metrics_address = bound.metrics;
  r.ucx_worker_address = bound.ucx_worker_address;
  r.weight = config.weight;
  r.dram_capacity_bytes = config.dram_capacity;
  r.ssd_capacity_bytes = config.ssd_dir.empty() ? 0 : config.ssd_capacity;
  r.hbm_capacity_bytes = config.hbm_capacity;
  r.started_unix_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  r.version = kVersion;
  KVSTASH_ASSIGN_OR_RETURN(auto registrar, membership::Registrar::Start(options));
  const membership::RegistrationHealth health = registrar->Health();
  if (health.state == membership::RegistrationState::kRegistered) {
    spdlog::info("member {} registered in cluster {} as {} (weight {}, lease TTL {} s{})", r.id, config.cluster,
                 r.grpc_address, r.weight, config.lease_ttl_s, health.draining ? ", draining: its drain mark is set" : "");
  }
  return registrar;
}

std::function<std::string()> WatchRegistration(metrics::Registry& registry, const membership::Registrar& registrar) {
  using membership::RegistrationState;
  auto& state = registry.AddGauge("kvstash_member_registration",
                                  "This daemon's cluster registration: 1 for its current state, 0 for the others.",
                                  {"state"});
  auto& published = registry.AddCounter("kvstash_member_registrations_total",
                                        "Times this daemon published its member record in etcd: the first, and "
                                        "every repair after a lost lease or a vanished record.");
  auto& draining = registry.AddGauge("kvstash_member_draining", "1 while this member is drained (kvstash drain).");
  const RegistrationState states[] = {RegistrationState::kPending, RegistrationState::kRegistered,
                                      RegistrationState::kEtcdUnreachable, RegistrationState::kConflict};
  for (RegistrationState s : states) state.WithLabels({membership::ToString(s)}).Set(0);
  auto counted = std::make_shared<std::atomic<uint64_t>>(0);  // registrations already counted
  registry.AddCollector([&registrar, &state, &published, &draining, states, counted] {
    const membership::RegistrationHealth h = registrar.Health();
    for (RegistrationState s : states) state.WithLabels({membership::ToString(s)}).Set(h.state == s ? 1 : 0);
    const uint64_t before = counted->exchange(h.registrations);
    if (h.registrations > before) published.WithLabels({}).Inc(static_cast<double>(h.registrations - before));
    draining.WithLabels({}).Set(h.draining ? 1 : 0);
  });
  return [&registrar] {
    const membership::RegistrationHealth h = registrar.Health();
    std::string line(membership::ToString(h.state));
    if (h.state == membership::RegistrationState::kRegistered && h.draining) line += " (draining)";
    if (!h.detail.empty()) line += ": " + h.detail;
    return line;
  };
}

ReplicatorOptions ReplicatorOptionsFor(const DaemonConfig& config) {
  ReplicatorOptions options;
  options.copies = config.replicas;
  options.hot_rate = config.hot_rate;
  options.etcd.endpoints = config.etcd_endpoints;
  options.etcd.ca_file = config.etcd_ca;
  options.etcd.cert_file = config.etcd_cert;
  options.etcd.key_file = config.etcd_key;
  options.cluster = config.cluster;
  options.static_peers = config.peers;
  options.peer_tls = {config.peer_tls_ca, config.peer_tls_cert, config.peer_tls_key, ""};
  return options;
}

}  // namespace kvstash::server
