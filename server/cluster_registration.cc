#include "server/cluster_registration.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>

#include "server/version.h"

namespace kvstash::server {
namespace {

// Peers cannot dial a wildcard address: publish the host name instead.
std::string Reachable(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return address;
  const std::string host = address.substr(0, colon);
  if (host != "0.0.0.0" && host != "[::]" && host != "::" && !host.empty()) return address;
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return address;
  return std::string(name) + address.substr(colon);
}

}  // namespace

Result<std::unique_ptr<membership::Registrar>> RegisterMember(const DaemonConfig& config,
                                                              const BoundAddresses& bound) {
  membership::RegistrarOptions options;
  options.etcd.endpoints = config.etcd_endpoints;
  options.cluster = config.cluster;
  options.lease_ttl_s = config.lease_ttl_s;
  membership::MemberRecord& r = options.record;
  r.id = bound.member_id;
  r.grpc_address = Reachable(bound.grpc);
  r.metrics_address = Reachable(bound.metrics);
  r.ucx_worker_address = bound.ucx_worker_address;
  r.weight = config.weight;
  r.dram_capacity_bytes = config.dram_capacity;
  r.started_unix_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  r.version = kVersion;
  KVSTASH_ASSIGN_OR_RETURN(auto registrar, membership::Registrar::Start(options));
  spdlog::info("member {} registered in cluster {} (weight {}, lease TTL {} s)", r.id,
               config.cluster, r.weight, config.lease_ttl_s);
  return registrar;
}

ReplicatorOptions ReplicatorOptionsFor(const DaemonConfig& config) {
  ReplicatorOptions options;
  options.copies = config.replicas;
  options.hot_rate = config.hot_rate;
  options.etcd.endpoints = config.etcd_endpoints;
  options.cluster = config.cluster;
  options.static_peers = config.peers;
  return options;
}

}  // namespace kvstash::server
