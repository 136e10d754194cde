// The daemon's side of cluster membership: builds this daemon's MemberRecord from its config and
// bound addresses and registers it in etcd (membership/registrar.h), and derives the hot-block
// replication settings. Used only when the daemon is not --standalone.
//
// Thread-safety: called once by Daemon::Start.
#pragma once

#include <memory>
#include <string>

#include "membership/registrar.h"
#include "server/daemon_config.h"
#include "server/replication/replicator.h"

namespace kvstash::server {

struct BoundAddresses {
  std::string member_id;
  std::string grpc;  // host:port as bound; a wildcard host is replaced by this host's name
  std::string metrics;
  std::string ucx_worker_address;  // empty without UCX
};

Result<std::unique_ptr<membership::Registrar>> RegisterMember(const DaemonConfig& config,
                                                              const BoundAddresses& bound);

// The hot-block replication settings implied by the config ([replication] and [cluster]).
ReplicatorOptions ReplicatorOptionsFor(const DaemonConfig& config);

}  // namespace kvstash::server
