// Daemon: one running kvstashd — its tiers (HBM, DRAM, SSD under a TierManager), the gRPC Store
// service, the UCX transfer server, cluster registration, /metrics and /healthz, and the
// reservation reaper — assembled from a DaemonConfig (docs/ARCHITECTURE.md §2).
//
// Thread-safety: Start, Wait and Shutdown are called by the owning thread (main); Shutdown may
// also be called from a signal-watching thread. The gRPC server and reaper own their threads.
#pragma once

#include <memory>
#include <string>

#include "kvstash/result.h"
#include "server/daemon_config.h"

namespace kvstash::server {

class Daemon {
 public:
  // Maps the arena, binds both ports and starts serving. UNAVAILABLE when a port cannot be bound.
  static Result<std::unique_ptr<Daemon>> Start(const DaemonConfig& config);
  ~Daemon();  // shuts down

  // The bound addresses (the port is the real one when 0 was asked for).
  const std::string& grpc_address() const;
  const std::string& metrics_address() const;

  // Re-reads the tokens file, then the quotas file (SIGHUP). On error the previous tokens (or
  // quotas) stay in force and the error is returned; FAILED_PRECONDITION when the daemon runs
  // without tokens. Thread-safe.
  Status ReloadTokens();

  // Stops accepting RPCs, lets in-flight ones finish (up to 5 s), stops /metrics and the reaper.
  // Idempotent.
  void Shutdown();
  // Blocks until Shutdown has completed.
  void Wait();

 private:
  struct Impl;
  explicit Daemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstash::server
