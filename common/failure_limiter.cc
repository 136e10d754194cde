#include "common/failure_limiter.h"

#include <algorithm>
#include <iterator>

namespace kvstash {

FailureLimiter::Budget& FailureLimiter::BudgetOf(const std::string& peer) {
  const uint64_t now = clock_->NowMs();
  auto refill = [&](Budget& b) {
    if (now > b.updated_ms) b.tokens = std::min(burst_, b.tokens + refill_per_s_ * static_cast<double>(now - b.updated_ms) / 1000.0);
    b.updated_ms = now;
  };
  if (auto it = budgets_.find(peer); it != budgets_.end()) {
    refill(it->second);
    return it->second;
  }
  if (budgets_.size() >= max_peers_) {
    for (auto it = budgets_.begin(); it != budgets_.end();) {
      refill(it->second);
      it = it->second.tokens >= burst_ ? budgets_.erase(it) : std::next(it);
    }
  }
  if (budgets_.size() >= max_peers_) {
    if (!overflow_started_) overflow_ = Budget{burst_, now};
    overflow_started_ = true;
    refill(overflow_);
    return overflow_;
  }
  return budgets_.emplace(peer, Budget{burst_, now}).first->second;
}

bool FailureLimiter::Allowed(const std::string& peer) {
  MutexLock lock(mu_);
  return BudgetOf(peer).tokens >= 1.0;
}

void FailureLimiter::RecordFailure(const std::string& peer) {
  MutexLock lock(mu_);
  Budget& budget = BudgetOf(peer);
  budget.tokens = std::max(0.0, budget.tokens - 1.0);
}

std::string PeerHost(const std::string& grpc_peer) {
  const size_t colon = grpc_peer.rfind(':');
  const size_t scheme = grpc_peer.find(':');
  if (colon == std::string::npos || colon == scheme) return grpc_peer;  // "unix:/path" and the like
  const std::string port = grpc_peer.substr(colon + 1);
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) return grpc_peer;
  return grpc_peer.substr(0, colon);
}

}  // namespace kvstash
