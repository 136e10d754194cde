// Mooncake-format trace text: ParseTrace either refuses it with an error naming the line or returns
// requests whose fields satisfy the contract it states (increasing timestamps, bounded hash ids).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/trace.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  kvstash::TraceLimits limits;
  limits.max_requests = 1000;
  limits.max_hash_ids_per_request = 1000;
  auto parsed = kvstash::ParseTrace(text, "fuzz", limits);
  if (!parsed.ok()) {
    if (parsed.status().message().empty()) std::abort();
    return 0;
  }
  if (parsed->size() > limits.max_requests) std::abort();
  for (size_t i = 0; i < parsed->size(); ++i) {
    const kvstash::TraceRequest& r = (*parsed)[i];
    if (r.hash_ids.size() > limits.max_hash_ids_per_request) std::abort();
    if (i > 0 && r.timestamp_ms < (*parsed)[i - 1].timestamp_ms) std::abort();
  }
  return 0;
}
