// ReplayLive: drives a live cluster's front door (kvstash-conductor --http) with a trace window,
// open loop: request i is sent at its timestamp / speed whatever happened to the others (a worker
// pool of max_in_flight connections; a request that finds every worker busy is sent late and its
// TTFT still counts from its scheduled time). Each completion is streamed, so TTFT and TBT are the
// arrival times of its token events here.
//
// Thread-safety: ReplayLive is reentrant.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/trace.h"
#include "kvstash/result.h"
#include "scheduler/sim_report.h"

namespace kvstash::replay {

struct LiveReplayOptions {
  std::string front_door;       // HOST:PORT of the conductor's HTTP front door
  double speed = 1.0;           // trace time / wall time
  uint32_t vocab = 32000;       // token ids are drawn from [0, vocab)
  uint32_t block_tokens = 512;  // tokens per hash id
  uint32_t max_output_tokens = 0;  // cap on output_length (0: none)
  size_t max_in_flight = 256;
  uint64_t request_timeout_ms = 600'000;
};

struct LiveOutcome {
  double scheduled_s = 0;   // trace time / speed
  double sent_late_s = 0;   // how long it waited for a free worker
  bool rejected = false, failed = false;
  std::string reason;       // ttft_slo | tbt_slo for rejections, the error otherwise
  double ttft_s = 0;        // scheduled send to first token
  double tbt_s = -1;        // (last − first token) / (tokens − 1); < 0 with fewer than two tokens
  uint64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
};

struct LiveRun {
  std::vector<LiveOutcome> requests;  // in trace order
  double makespan_s = 0;
};

// INVALID_ARGUMENT for a bad address, speed or vocab; otherwise every request has an outcome
// (network errors are failed outcomes, not an error of the run).
Result<LiveRun> ReplayLive(const std::vector<TraceRequest>& window, const LiveReplayOptions& options);

// The simulator's summary for a live run. Times are divided by `time_scale` (the emulated nodes'
// --time-scale), so they read in the cost model's seconds; failed requests count as misses and,
// like rejections, are not in the TTFT/TBT quantiles. hit_ratio = cached / prompt tokens.
scheduler::PolicySummary SummarizeLive(const LiveRun& run, const std::string& label, double time_scale,
                                       double ttft_slo_s, double tbt_slo_s);

}  // namespace kvstash::replay
