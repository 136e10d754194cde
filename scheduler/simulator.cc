#include "scheduler/simulator.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <queue>
#include <unordered_map>

namespace kvstash::scheduler {
namespace {

struct Seq {
  uint32_t req = 0;
  uint64_t remaining = 0;  // decode tokens still to produce
  uint64_t context = 0;
  double ready_s = 0;  // prefill end
  uint64_t decode_tokens = 0;
};

struct Incoming {
  double ready_s = 0;
  uint64_t context = 0;
};

struct DecodeInstance {
  std::vector<Seq> active;
  std::deque<Seq> waiting;
  std::unordered_map<uint32_t, Incoming> incoming;  // routed here, prefill not done
  uint64_t context_total = 0;                       // of active
  double step_s = 0;                                // duration of the step in flight
  bool stepping = false;
};

struct PrefillInstance {
  explicit PrefillInstance(uint64_t cap) : cache(cap) {}
  BlockCache cache;
  double busy_until = 0;
};

enum class EventType : uint8_t { kArrival, kPrefillDone, kDecodeStepDone };
struct Event {
  double t;
  uint64_t seq;
  EventType type;
  uint32_t arg;
  bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
};

class SimCluster final : public ClusterView {
 public:
  SimCluster(const SimOptions& o, const CostModel& cost) : cost_(cost) {
    for (uint32_t i = 0; i < o.prefill; ++i) prefill_.emplace_back(o.local_cache_blocks);
    decode_.resize(o.decode);
  }
  size_t prefill_count() const override { return prefill_.size(); }
  size_t decode_count() const override { return decode_.size(); }
  double PrefillQueueSeconds(size_t i, double now_s) const override {
    return std::max(0.0, prefill_[i].busy_until - now_s);
  }
  void PrefixMatches(std::span<const BlockId> chain, std::vector<uint32_t>& out) const override {
    out.resize(prefill_.size());
    for (size_t i = 0; i < prefill_.size(); ++i) out[i] = prefill_[i].cache.PrefixMatch(chain);
  }
  DecodeLoad DecodeLoadNow(size_t j) const override {
    const DecodeInstance& d = decode_[j];
    DecodeLoad l{d.active.size() + d.waiting.size(), d.context_total};
    for (const Seq& s : d.waiting) l.context_tokens += s.context;
    return l;
  }
  DecodeLoad DecodeLoadAt(size_t j, double at_s) const override {
    const DecodeInstance& d = decode_[j];
    DecodeLoad l;
    const double ahead = std::max(0.0, at_s - now_);
    const double step = d.active.empty() ? 0.0 : d.step_s;
    for (const Seq& s : d.active) {
      const double steps = step > 0 ? ahead / step : 0.0;
      if (double(s.remaining) > steps) {
        ++l.batch;
        l.context_tokens += s.context + uint64_t(steps);
      }
    }
    for (const Seq& s : d.waiting) ++l.batch, l.context_tokens += s.context;
    for (const auto& [req, in] : d.incoming) {
      if (in.ready_s <= at_s) ++l.batch, l.context_tokens += in.context;
    }
    return l;
  }

  const CostModel& cost_;
  std::vector<PrefillInstance> prefill_;
  std::vector<DecodeInstance> decode_;
  double now_ = 0;
};

class Run {
 public:
  Run(const std::vector<TraceRequest>& trace, const CostModel& cost, const SimOptions& o,
      Router router)
      : trace_(trace), cost_(cost), o_(o), router_(std::move(router)), cluster_(o, cost) {}

  Result<SimResult> Go() {
    result_.policy = std::string(router_.policy().name());
    result_.requests.resize(trace_.size());
    decode_of_.assign(trace_.size(), 0);
    prefill_of_.assign(trace_.size(), 0);
    for (uint32_t i = 0; i < trace_.size(); ++i) {
      Push(double(trace_[i].timestamp_ms) / 1000.0 / o_.rate_scale, EventType::kArrival, i);
    }
    const size_t every = std::max<size_t>(1, trace_.size() / 1000);
    size_t arrived = 0;
    while (!events_.empty()) {
      const Event e = events_.top();
      events_.pop();
      cluster_.now_ = e.t;
      result_.makespan_s = std::max(result_.makespan_s, e.t);
      switch (e.type) {
        case EventType::kArrival:
          KVSTASH_RETURN_IF_ERROR(Arrive(e.arg, e.t));
          if (o_.progress && (++arrived % every == 0 || arrived == trace_.size())) {
            o_.progress(double(arrived) / double(trace_.size()));
          }
          break;
        case EventType::kPrefillDone:
          PrefillDone(e.arg, e.t);
          break;
        case EventType::kDecodeStepDone:
          StepDone(e.arg, e.t);
          break;
      }
    }
    return std::move(result_);
  }

 private:
  void Push(double t, EventType type, uint32_t arg) { events_.push(Event{t, seq_++, type, arg}); }

  Status Arrive(uint32_t i, double now) {
    const TraceRequest& tr = trace_[i];
    RouteRequest req{i, now, tr.input_length, tr.output_length, tr.hash_ids};
    auto d = router_.Route(req, cluster_);
    if (!d.ok())
      return InvalidArgument("trace line " + std::to_string(i + 1) + ": " + d.status().message());
    RequestOutcome& out = result_.requests[i];
    out.arrival_s = now;
    out.blocks = uint32_t(tr.hash_ids.size());
    out.predicted_ttft_s = d->plan.ttft_s();
    const size_t bucket = size_t(now / o_.timeline_bucket_s);
    if (result_.timeline.size() <= bucket) {
      for (size_t b = result_.timeline.size(); b <= bucket; ++b) {
        result_.timeline.push_back({double(b) * o_.timeline_bucket_s, 0, 0});
      }
    }
    if (d->rejected()) {
      out.rejected = true;
      out.reason = d->reject;
      return Status::Ok();
    }
    const PrefillPlan& plan = d->plan;
    PrefillInstance& p = cluster_.prefill_[plan.prefill];
    p.cache.Touch(tr.hash_ids, plan.local_blocks);
    if (plan.fetch_source >= 0) {
      cluster_.prefill_[size_t(plan.fetch_source)].cache.Touch(
          tr.hash_ids, plan.local_blocks + plan.fetch_blocks);
    }
    const uint32_t reused = plan.local_blocks + plan.fetch_blocks;
    out.local_blocks = plan.local_blocks;
    out.fetched_blocks = plan.fetch_blocks;
    out.prefill = plan.prefill;
    out.decode = d->decode;
    out.fetch_source = plan.fetch_source;
    result_.timeline[bucket].blocks += out.blocks;
    result_.timeline[bucket].hit_blocks += reused;
    const double start = std::max(p.busy_until, now + cost_.TransferSeconds(plan.fetch_blocks));
    out.prefill_compute_s =
        cost_.PrefillSeconds(tr.input_length, cost_.CachedTokens(tr.input_length, reused));
    p.busy_until = start + out.prefill_compute_s;
    out.ttft_s = p.busy_until - now;
    prefill_of_[i] = plan.prefill;
    decode_of_[i] = d->decode;
    cluster_.decode_[d->decode].incoming[i] = Incoming{p.busy_until, tr.input_length + 1};
    Push(p.busy_until, EventType::kPrefillDone, i);
    return Status::Ok();
  }

  void PrefillDone(uint32_t i, double now) {
    const TraceRequest& tr = trace_[i];
    cluster_.prefill_[prefill_of_[i]].cache.InsertChain(tr.hash_ids);
    DecodeInstance& d = cluster_.decode_[decode_of_[i]];
    d.incoming.erase(i);
    if (tr.output_length <= 1) return;
    const uint64_t tokens = tr.output_length - 1;
    d.waiting.push_back(Seq{i, tokens, tr.input_length + 1, now, tokens});
    if (!d.stepping) StartStep(decode_of_[i], now);
  }

  void StartStep(uint32_t j, double now) {
    DecodeInstance& d = cluster_.decode_[j];
    while (!d.waiting.empty() && d.active.size() < cost_.decode_max_batch) {
      const Seq& s = d.waiting.front();
      if (!d.active.empty() && d.context_total + s.context + s.remaining > cost_.decode_kv_tokens)
        break;
      d.context_total += s.context;
      d.active.push_back(s);
      d.waiting.pop_front();
    }
    if (d.active.empty()) {
      d.stepping = false;
      return;
    }
    d.stepping = true;
    d.step_s = cost_.DecodeStepSeconds(d.active.size(), d.context_total);
    Push(now + d.step_s, EventType::kDecodeStepDone, j);
  }

  void StepDone(uint32_t j, double now) {
    DecodeInstance& d = cluster_.decode_[j];
    size_t keep = 0;
    for (size_t k = 0; k < d.active.size(); ++k) {
      Seq s = d.active[k];
      --s.remaining;
      ++s.context;
      ++d.context_total;
      if (s.remaining == 0) {
        result_.requests[s.req].tbt_s = (now - s.ready_s) / double(s.decode_tokens);
        d.context_total -= s.context;
      } else {
        d.active[keep++] = s;
      }
    }
    d.active.resize(keep);
    StartStep(j, now);
  }

  const std::vector<TraceRequest>& trace_;
  const CostModel& cost_;
  const SimOptions& o_;
  Router router_;
  SimCluster cluster_;
  SimResult result_;
  std::vector<uint32_t> decode_of_, prefill_of_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  uint64_t seq_ = 0;
};

}  // namespace

Result<SimResult> Simulate(const std::vector<TraceRequest>& trace, const CostModel& cost, PolicyKind policy,
                           const SimOptions& options) {
  if (options.prefill == 0 || options.decode == 0) {
    return InvalidArgument(
        "the simulated cluster needs at least one prefill and one decode instance");
  }
  if (options.prefill > 4096 || options.decode > 4096)
    return InvalidArgument("at most 4096 instances per role");
  if (!(options.rate_scale > 0) || !std::isfinite(options.rate_scale)) {
    return InvalidArgument("rate_scale must be a positive number");
  }
  if (!(options.timeline_bucket_s > 0)) return InvalidArgument("timeline bucket must be positive");
  if (trace.size() > UINT32_MAX) return InvalidArgument("trace too long");
  KVSTASH_ASSIGN_OR_RETURN(auto p,
                           MakePolicy(policy, {options.seed, options.kvcache_balancing_threshold}));
  Run run(trace, cost, options, Router(std::move(p), cost, options.router));
  return run.Go();
}

}  // namespace kvstash::scheduler
