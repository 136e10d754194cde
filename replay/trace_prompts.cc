#include "replay/trace_prompts.h"

namespace kvstash::replay {
namespace {

uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

std::vector<uint32_t> SynthesizePrompt(const TraceRequest& request, uint64_t request_index, uint32_t vocab,
                                       uint32_t block_tokens) {
  std::vector<uint32_t> prompt;
  prompt.reserve(request.input_length);
  for (uint64_t i = 0; i < request.input_length; ++i) {
    const uint64_t block = i / block_tokens, offset = i % block_tokens;
    const uint64_t seed = block < request.hash_ids.size()
                              ? Mix64(request.hash_ids[block])
                              : Mix64(~request_index ^ (block << 40));  // past the hash ids: this request's own
    prompt.push_back(static_cast<uint32_t>(Mix64(seed + offset) % vocab));
  }
  return prompt;
}

std::vector<TraceRequest> TraceWindow(const std::vector<TraceRequest>& trace, double start_s, double window_s,
                                      uint64_t max_requests) {
  std::vector<TraceRequest> out;
  const double start_ms = start_s * 1000, end_ms = window_s > 0 ? (start_s + window_s) * 1000 : -1;
  for (const TraceRequest& r : trace) {
    if (out.size() >= max_requests) break;
    const double t = double(r.timestamp_ms);
    if (t < start_ms || (end_ms >= 0 && t >= end_ms)) continue;
    out.push_back(r);
  }
  if (!out.empty()) {
    const uint64_t first = out.front().timestamp_ms;
    for (TraceRequest& r : out) r.timestamp_ms -= first;
  }
  return out;
}

}  // namespace kvstash::replay
