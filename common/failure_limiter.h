// FailureLimiter: rate-limits failed authentication attempts per peer (docs/SECURITY.md): bearer
// tokens on kvstashd's gRPC port, basic auth on every metrics endpoint. Each peer
// has a budget of `burst` failures that refills at `refill_per_s`; a peer whose budget is spent is
// refused without its attempt being checked until the budget refills. Successful attempts cost
// nothing. At most `max_peers` peers are tracked: past that, peers whose budgets are full again are
// forgotten, and when none is, the new peer shares a single overflow budget (so a flood of
// addresses cannot grow memory without bound).
//
// Thread-safety: every method is safe for concurrent use.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "common/mutex.h"

namespace kvstash {

class FailureLimiter {
 public:
  FailureLimiter(const Clock* clock, double burst = 10, double refill_per_s = 1, size_t max_peers = 10'000)
      : clock_(clock), burst_(burst), refill_per_s_(refill_per_s), max_peers_(max_peers) {}

  // False when `peer` has spent its budget of failures.
  bool Allowed(const std::string& peer);
  // Spends one failure of `peer`'s budget.
  void RecordFailure(const std::string& peer);

 private:
  struct Budget {
    double tokens;
    uint64_t updated_ms;
  };
  Budget& BudgetOf(const std::string& peer) REQUIRES(mu_);  // refilled to now

  const Clock* clock_;
  const double burst_;
  const double refill_per_s_;
  const size_t max_peers_;
  Mutex mu_;
  std::unordered_map<std::string, Budget> budgets_ GUARDED_BY(mu_);
  Budget overflow_ GUARDED_BY(mu_){0, 0};
  bool overflow_started_ GUARDED_BY(mu_) = false;
};

// The address part of a gRPC peer string ("ipv4:10.0.0.5:51234" -> "ipv4:10.0.0.5",
// "ipv6:[::1]:51234" -> "ipv6:[::1]"): a peer's budget does not depend on its source port.
std::string PeerHost(const std::string& grpc_peer);

}  // namespace kvstash
