#include "scheduler/live_view.h"

namespace kvstash::scheduler {

LiveView::LiveView(const ConductorState& state, double now_s, double timeout_s,
                   const std::set<std::string>* excluded)
    : state_(state) {
  auto out = [&](const std::string& id) { return excluded != nullptr && excluded->contains(id); };
  for (uint32_t i = 0; i < state.prefill_count(); ++i) {
    if ((timeout_s <= 0 || now_s - state.PrefillLastSeen(i) <= timeout_s) && !out(state.PrefillId(i))) {
      prefill_.push_back(i);
    }
  }
  for (uint32_t j = 0; j < state.decode_count(); ++j) {
    if ((timeout_s <= 0 || now_s - state.DecodeLastSeen(j) <= timeout_s) && !out(state.DecodeId(j))) {
      decode_.push_back(j);
    }
  }
}

void LiveView::PrefixMatches(std::span<const BlockId> chain, std::vector<uint32_t>& out) const {
  state_.PrefixMatches(chain, all_matches_);
  out.resize(prefill_.size());
  for (size_t i = 0; i < prefill_.size(); ++i) out[i] = all_matches_[prefill_[i]];
}

RouteDecision LiveView::ToUnderlying(RouteDecision d) const {
  d.plan.prefill = prefill_[d.plan.prefill];
  if (d.plan.fetch_source >= 0) d.plan.fetch_source = static_cast<int32_t>(prefill_[size_t(d.plan.fetch_source)]);
  d.decode = decode_[d.decode];
  return d;
}

}  // namespace kvstash::scheduler
