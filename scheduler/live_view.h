// LiveView: a ClusterView of only the instances heard from recently — registered, heartbeated or
// sent KV events within `timeout_s` of `now_s` — renumbered 0..n-1 so that policies stay unaware of
// the dead. The conductor routes over it and maps the decision back (ToUnderlying) before
// committing it, so instances that stop heartbeating drop out of routing within their timeout
// and come back with their next heartbeat or registration.
//
// Thread-safety: a snapshot for one Route call, under the caller's lock on `state`.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "scheduler/conductor_state.h"
#include "scheduler/router.h"

namespace kvstash::scheduler {

class LiveView final : public ClusterView {
 public:
  // timeout_s <= 0: every instance is live. Instances named in `excluded` (may be null) are left
  // out too.
  LiveView(const ConductorState& state, double now_s, double timeout_s, const std::set<std::string>* excluded = nullptr);

  size_t prefill_count() const override { return prefill_.size(); }
  size_t decode_count() const override { return decode_.size(); }
  double PrefillQueueSeconds(size_t i, double now_s) const override {
    return state_.PrefillQueueSeconds(prefill_[i], now_s);
  }
  void PrefixMatches(std::span<const BlockId> chain, std::vector<uint32_t>& out) const override;
  DecodeLoad DecodeLoadNow(size_t j) const override { return state_.DecodeLoadNow(decode_[j]); }
  DecodeLoad DecodeLoadAt(size_t j, double at_s) const override { return state_.DecodeLoadAt(decode_[j], at_s); }

  // A decision over this view in the state's numbering.
  RouteDecision ToUnderlying(RouteDecision d) const;

 private:
  const ConductorState& state_;
  std::vector<uint32_t> prefill_, decode_;  // live instances' indices in the state
  mutable std::vector<uint32_t> all_matches_;
};

}  // namespace kvstash::scheduler
