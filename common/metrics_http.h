// The metrics endpoint of kvstashd, kvstash-node and kvstash-conductor: GET /metrics (a Registry's
// Render()) and GET /healthz ("ok"), on an address of its own, in plaintext or over TLS, with
// optional credentials for /metrics (docs/SECURITY.md "The metrics endpoint").
//
// Credentials: when MetricsAuth::required(), GET /metrics needs an `Authorization` header —
// `Basic` with a user and password listed (as SHA-256) in basic_auth_file, or `Bearer` with a token
// the `bearer` check admits. No header, a malformed one or unknown credentials: 401 with
// `WWW-Authenticate`; a bearer token the check admits but whose role is too low: 403. /healthz takes
// no credentials (load balancers probe it), and says nothing but "ok". Failed basic-auth attempts
// are rate-limited per client address (common/failure_limiter.h): past `basic_failure_burst`
// failures, that address's further attempts get 401 "too many failed attempts" without being
// checked, until its budget refills. (Bearer tokens are rate-limited by the `bearer` check's owner:
// kvstashd's Authorizer, whose budget the gRPC port shares.)
//
// Thread-safety: Start and Stop from one owning thread; the bearer check runs on the server's
// worker threads concurrently.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/http_options.h"
#include "kvstash/result.h"

namespace kvstash::metrics {

class Registry;

struct MetricsAuth {
  // One `<user> <sha256 of the password, 64 hex digits>` a line, '#' comments; empty = no basic auth.
  // Read at Start.
  std::string basic_auth_file;
  // Checks an `Authorization: Bearer ...` value from `peer` (its IP address): OK = may read /metrics,
  // UNAUTHENTICATED (401) or PERMISSION_DENIED (403) = refused. Empty = bearer tokens are refused.
  std::function<Status(const std::string& peer, std::string_view authorization)> bearer;
  // Failed basic-auth attempts a client address may make in a row, and how many it regains a second.
  double basic_failure_burst = 10;
  double basic_failure_refill_per_s = 1;
  const Clock* clock = SteadyClock::Default();  // drives that budget; not owned
  bool required() const { return !basic_auth_file.empty() || static_cast<bool>(bearer); }
};

struct MetricsHttpOptions {
  HttpLimits limits;
  HttpTlsFiles tls;  // enabled() = the endpoint speaks only HTTPS
  MetricsAuth auth;
};

// Serves GET /metrics and GET /healthz on its own threads.
class MetricsHttpServer {
 public:
  explicit MetricsHttpServer(const Registry* registry, MetricsHttpOptions options = {});
  ~MetricsHttpServer();  // stops

  // Binds host:port (port 0 picks a free one) and starts serving; returns the bound port.
  // INVALID_ARGUMENT when a TLS or basic-auth file does not load.
  Result<int> Start(const std::string& host, int port);
  void Stop();
  bool tls() const;
  // The endpoint's connection counters (slow or surplus clients closed, issue 17); zeros before Start.
  HttpCounters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Parses a basic-auth file's text (format above) into user -> lower-case hex SHA-256 of the password.
// INVALID_ARGUMENT naming `origin` and the line of the first malformed entry.
Result<std::vector<std::pair<std::string, std::string>>> ParseBasicAuthFile(std::string_view text,
                                                                             const std::string& origin);

}  // namespace kvstash::metrics
