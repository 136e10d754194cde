// Request traces in Mooncake's published format: JSON Lines, one request per line,
//   {"timestamp": <ms, int>, "input_length": <tokens>, "output_length": <tokens>, "hash_ids": [<int>...]}
// where hash_ids[i] names the i-th 512-token block of the prompt as a prefix hash (equal ids mean
// equal prefixes). The format is all kvstash relies on; nothing here knows which trace it reads.
//
// Thread-safety: plain functions and values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvstash/result.h"

namespace kvstash {

struct TraceRequest {
  uint64_t timestamp_ms = 0;
  uint64_t input_length = 0;   // prompt tokens
  uint64_t output_length = 0;  // generated tokens
  std::vector<uint64_t> hash_ids;
};

struct TraceLimits {
  uint64_t max_requests = 10'000'000;
  uint64_t max_hash_ids_per_request = 1'000'000;
};

// Parses a whole trace. INVALID_ARGUMENT naming the line for malformed JSON, missing or negative
// fields, or a non-increasing timestamp; NOT_FOUND when the file cannot be opened. Blank lines are
// skipped.
Result<std::vector<TraceRequest>> LoadTrace(const std::string& path, const TraceLimits& limits = {});
Result<std::vector<TraceRequest>> ParseTrace(const std::string& jsonl, const std::string& origin,
                                             const TraceLimits& limits = {});

// Tokens per block in Mooncake's traces.
inline constexpr uint64_t kTraceBlockTokens = 512;

}  // namespace kvstash
