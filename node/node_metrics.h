// kvstash-node's Prometheus families (the kvstash_node_* names; README "Serve a model" lists them).
// Latencies (TTFT, time between tokens) and request outcomes are recorded by the HTTP front as
// they happen; everything NodeRuntime counts itself (prompt tokens by source, KV bytes, blocks
// rejected, store errors, batch and pool occupancy) is mirrored from RuntimeStats at scrape time.
//
// Thread-safety: Record* may be called from any thread (RecordTokenGap from the runtime's step
// thread: it is lock-free).
#pragma once

#include <functional>
#include <string_view>

#include "common/metrics.h"
#include "common/mutex.h"
#include "kvstash/status.h"
#include "node/runtime.h"

namespace kvstash::node {

class NodeMetrics {
 public:
  // Registers every family in `registry` and a collector that calls `stats` at every scrape
  // (NodeRuntime::Stats; it must stay callable while the registry is scraped).
  NodeMetrics(metrics::Registry& registry, std::function<RuntimeStats()> stats);

  // One completion request answered: OK, or the status that refused or failed it.
  void RecordRequest(const Status& status);
  // A finished completion: its time to first token and how many tokens it generated.
  void RecordCompletion(double ttft_seconds, size_t completion_tokens);
  // The time between two consecutive tokens of one sequence.
  void RecordTokenGap(double seconds);

 private:
  void Collect();

  std::function<RuntimeStats()> stats_;
  metrics::Family<metrics::Counter>& requests_;
  metrics::Histogram& ttft_;
  metrics::Histogram& tbt_;
  metrics::Counter& completion_tokens_;
  metrics::Family<metrics::Counter>& prompt_tokens_;
  metrics::Family<metrics::Counter>& kv_bytes_;
  metrics::Counter& blocks_rejected_;
  metrics::Counter& store_errors_;
  metrics::Family<metrics::Counter>& handoff_slices_;
  metrics::Family<metrics::Counter>& handoff_bytes_;
  metrics::Gauge& running_;
  metrics::Gauge& waiting_;
  metrics::Gauge& pool_pages_;
  metrics::Gauge& pool_pages_used_;
  metrics::Gauge& cached_blocks_;
  metrics::Gauge& last_step_;
  Mutex collect_mu_;
  RuntimeStats last_ GUARDED_BY(collect_mu_);  // : the counters already published
};

}  // namespace kvstash::node
