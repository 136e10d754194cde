#include "scheduler/router.h"

namespace kvstash::scheduler {

Result<Admission> ParseAdmission(const std::string& name) {
  if (name == "off") return Admission::kOff;
  if (name == "current") return Admission::kCurrent;
  if (name == "predicted") return Admission::kPredicted;
  return InvalidArgument("unknown admission mode '" + name + "' (known: off, current, predicted)");
}

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kNone:
      return "none";
    case RejectReason::kTtftSlo:
      return "ttft_slo";
    case RejectReason::kTbtSlo:
      return "tbt_slo";
  }
  return "unknown";
}

Result<RouteDecision> Router::Route(const RouteRequest& req, const ClusterView& view) {
  const std::string who = "request " + std::to_string(req.id) + ": ";
  if (req.input_tokens == 0) return InvalidArgument(who + "input_tokens is zero");
  // A prompt shorter than one block has no full block: an empty chain, nothing to reuse.
  if (req.chain.empty() && req.input_tokens >= cost_.block_tokens) return InvalidArgument(who + "empty block chain");
  if (req.input_tokens > options_.max_input_tokens) {
    return InvalidArgument(who + "input_tokens " + std::to_string(req.input_tokens) +
                           " exceeds the limit " + std::to_string(options_.max_input_tokens));
  }
  if (req.output_tokens > options_.max_output_tokens) {
    return InvalidArgument(who + "output_tokens " + std::to_string(req.output_tokens) +
                           " exceeds the limit " + std::to_string(options_.max_output_tokens));
  }
  const uint64_t bt = cost_.block_tokens;
  const uint64_t full = req.input_tokens / bt, want = (req.input_tokens + bt - 1) / bt;
  if (req.chain.size() != want && req.chain.size() != full) {
    return InvalidArgument(who + std::to_string(req.chain.size()) + " blocks do not cover " +
                           std::to_string(req.input_tokens) + " tokens (expected " +
                           std::to_string(want) + " blocks of " + std::to_string(bt) + ", or " +
                           std::to_string(full) + " without the partial last one)");
  }
  if (view.prefill_count() == 0) return FailedPrecondition("no prefill instance is registered");
  if (view.decode_count() == 0) return FailedPrecondition("no decode instance is registered");

  view.PrefixMatches(req.chain, matches_);
  RouteDecision d;
  d.plan = policy_->ChoosePrefill(req, view, matches_, cost_);
  const double ready_s = req.now_s + d.plan.ttft_s();
  auto load_of = [&](size_t j) {
    return options_.admission == Admission::kPredicted ? view.DecodeLoadAt(j, ready_s)
                                                       : view.DecodeLoadNow(j);
  };
  auto tbt_of = [&](const DecodeLoad& l) {
    return cost_.DecodeStepSeconds(l.batch + 1, l.context_tokens + req.input_tokens);
  };
  if (auto blind = policy_->ChooseDecode(view)) {
    d.decode = *blind;
    d.predicted_tbt_s = tbt_of(load_of(d.decode));
  } else {
    d.predicted_tbt_s = tbt_of(load_of(0));
    for (uint32_t j = 1; j < view.decode_count(); ++j) {
      const double t = tbt_of(load_of(j));
      if (t < d.predicted_tbt_s) d.decode = j, d.predicted_tbt_s = t;
    }
  }
  if (options_.admission != Admission::kOff) {
    if (d.plan.ttft_s() > options_.ttft_slo_s) {
      d.reject = RejectReason::kTtftSlo;
    } else if (d.predicted_tbt_s > options_.tbt_slo_s) {
      d.reject = RejectReason::kTbtSlo;
    }
  }
  return d;
}

}  // namespace kvstash::scheduler
