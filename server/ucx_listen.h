// Where kvstashd's UCX data plane listens (--ucx-listen, [ucx] listen), resolved to the network
// devices its UCX contexts may use (transfer::UcxOptions::net_devices, UCX's NET_DEVICES).
//
// UCX 1.13's tcp transport opens a listening socket in every worker on every network interface it
// uses, bound to that interface's address; left to its default it uses every interface that is up,
// so a daemon started with --listen 127.0.0.1:PORT would also take data-plane connections on the
// host's other addresses. The daemon therefore names the interfaces:
//   ""      (the default) the interfaces that carry the gRPC --listen host's addresses; a wildcard
//           host (0.0.0.0, ::) means every interface;
//   "all"   every interface (UCX's default);
//   NAME    that interface ("eth0", "lo");
//   ADDRESS the interface that carries that IP address (UCX then binds the interface's address,
//           IPv4 first: it listens per interface, not per address).
// RDMA ports (the network devices of UCX's other transports, "mlx5_0:1") are kept in every case:
// they open no sockets, and leaving them out would turn RDMA off.
#pragma once

#include <string>

#include "kvstash/result.h"

namespace kvstash::server {

struct UcxListen {
  std::string net_devices;  // for UcxOptions::net_devices; empty = every device (UCX's default)
  std::string description;  // for the start-up log: "lo (the interface of --listen 127.0.0.1)"
};

// INVALID_ARGUMENT naming the value when `ucx_listen` is neither "all", an interface nor an
// address some interface carries; likewise when it names an interface UCX's tcp transport cannot
// use (down, or without an address). A default derived from `grpc_host` that UCX cannot use is
// only warned about: the daemon then serves same-host peers through shared memory alone.
Result<UcxListen> ResolveUcxListen(const std::string& ucx_listen, const std::string& grpc_host);

}  // namespace kvstash::server
