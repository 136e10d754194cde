// Prompts for a Mooncake-format trace: each hash id names a fixed, deterministic run of
// `block_tokens` token ids, and a request's prompt is its hash ids' runs in order, cut to its
// input_length. Requests that share hash ids therefore share real token prefixes, and the nodes'
// own PrefixHasher finds the same sharing the trace records (block for block when block_tokens is
// the nodes' block size).
//
// Thread-safety: plain functions.
#pragma once

#include <cstdint>
#include <vector>

#include "common/trace.h"

namespace kvstash::replay {

// REQUIRES: vocab >= 1, block_tokens >= 1. Tokens past the hash ids' runs (a trace whose hash ids
// cover fewer tokens than input_length) come from the request's index, so they are never shared.
std::vector<uint32_t> SynthesizePrompt(const TraceRequest& request, uint64_t request_index, uint32_t vocab,
                                       uint32_t block_tokens);

// The requests whose timestamp lies in [start_s, start_s + window_s) (window_s <= 0: to the end),
// at most max_requests of them, with timestamps rebased so the first is 0.
std::vector<TraceRequest> TraceWindow(const std::vector<TraceRequest>& trace, double start_s, double window_s,
                                      uint64_t max_requests);

}  // namespace kvstash::replay
