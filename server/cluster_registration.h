// The daemon's side of cluster membership: the address it advertises, its MemberRecord registered
// in etcd (membership/registrar.h), the registration's health as metrics and as the Stats line,
// and the hot-block replication settings. Registration is used only when the daemon is not
// --standalone.
//
// Thread-safety: RegisterMember and WatchRegistration are called once by Daemon::Start; the
// functions they return are safe to call from any thread while the registrar lives.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/metrics.h"
#include "membership/registrar.h"
#include "server/daemon_config.h"
#include "server/replication/replicator.h"

namespace kvstash::server {

// What peers and clients dial for a bound HOST:PORT: config.advertise when set, else the bound
// host, else (a wildcard: 0.0.0.0, ::, [::]) this host's name; always with the bound port.
std::string AdvertisedAddress(const DaemonConfig& config, const std::string& bound);

struct BoundAddresses {
  std::string member_id;
  std::string grpc;     // advertised HOST:PORT (AdvertisedAddress)
  std::string metrics;  // advertised HOST:PORT
  std::string ucx_worker_address;  // empty without UCX
};

// ALREADY_EXISTS when a live member with another address holds the id; INVALID_ARGUMENT for bad
// settings. When etcd does not answer, returns a registrar that keeps trying in the background.
Result<std::unique_ptr<membership::Registrar>> RegisterMember(const DaemonConfig& config,
                                                              const BoundAddresses& bound);

// Mirrors `registrar`'s health into `registry` (kvstash_member_registration{state},
// kvstash_member_registrations_total, kvstash_member_draining) and returns the Stats line
// ("registered", or "<state>: <why>"). REQUIRES: `registrar` outlives every render of `registry`
// and every call of the returned function.
std::function<std::string()> WatchRegistration(metrics::Registry& registry, const membership::Registrar& registrar);

// The hot-block replication settings implied by the config ([replication] and [cluster]).
ReplicatorOptions ReplicatorOptionsFor(const DaemonConfig& config);

}  // namespace kvstash::server
