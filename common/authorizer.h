// Authorizer: checks the bearer token of a call (a gRPC RPC of kvstashd, kvstash-node or
// kvstash-conductor, or an HTTP request of theirs) against the tokens file and the role the call
// needs (docs/SECURITY.md "Tokens"). A call without a token or with an unknown one is
// UNAUTHENTICATED; one whose token's role is too low is PERMISSION_DENIED; either way the handler
// does not run, so nothing changes. Failed attempts are rate-limited per peer (FailureLimiter).
//
// Thread-safety: Admit runs on gRPC handler threads concurrently; Reload may run on any thread
// at the same time (the table is swapped whole).
#pragma once

#include <grpcpp/server_context.h>

#include <memory>
#include <string>

#include "common/auth.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "kvstash/result.h"
#include "common/failure_limiter.h"

namespace kvstash::auth {

// How many failed token checks a peer may make (FailureLimiter).
struct FailureBudget {
  double burst = 10;        // failures a peer may make in a row
  double refill_per_s = 1;  // failures it regains per second
};

class Authorizer {
 public:
  // Loads `tokens_file`; INVALID_ARGUMENT when it cannot be read or parsed. `clock` (not owned)
  // drives the failure budget.
  // `limits` bounds failed attempts per peer.
  static Result<std::unique_ptr<Authorizer>> Create(const std::string& tokens_file, FailureBudget limits = {},
                                                    const Clock* clock = SteadyClock::Default());

  // The principal of the call's token when its role is at least `needed`.
  Result<auth::Principal> Admit(const grpc::ServerContext& context, auth::Role needed);
  // The same for a call from `grpc_peer` ("ipv4:10.0.0.5:51234") whose "authorization" metadata
  // is `authorization` (nullopt: none sent).
  Result<auth::Principal> Admit(const std::string& grpc_peer, std::optional<std::string_view> authorization,
                                auth::Role needed);
  // The same for an HTTP request from the IP address `remote_addr` (its `Authorization` header).
  // Failures count against the same per-address budget as the gRPC port's.
  Result<auth::Principal> AdmitFromAddress(const std::string& remote_addr,
                                           std::optional<std::string_view> authorization, auth::Role needed);
  // Re-reads the tokens file. On error the previous table stays in force.
  Status Reload();
  size_t tokens() const;

 private:
  // `peer` is the failure budget's key: PeerHost's form, "ipv4:10.0.0.5" or "ipv6:[::1]".
  Result<auth::Principal> AdmitPeer(const std::string& peer, std::optional<std::string_view> authorization,
                                    auth::Role needed);
  Authorizer(std::string path, std::shared_ptr<const auth::TokenTable> table, FailureBudget limits,
             const Clock* clock)
      : path_(std::move(path)), table_(std::move(table)), limiter_(clock, limits.burst, limits.refill_per_s) {}

  const std::string path_;
  mutable Mutex mu_;
  std::shared_ptr<const auth::TokenTable> table_ GUARDED_BY(mu_);  // (the pointer; the table is immutable)
  FailureLimiter limiter_;
};

}  // namespace kvstash::auth
