// The conductor's front door: an HTTP body for POST /v1/completions. ParseCompletion refuses it with
// INVALID_ARGUMENT or returns a completion with 1..2^20 prompt token ids or 1 B..4 MiB of prompt text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "scheduler/front_door_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parsed = kvstash::scheduler::ParseCompletion(std::string(reinterpret_cast<const char*>(data), size));
  if (!parsed.ok()) {
    if (parsed.status().code() != kvstash::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  if (parsed->prompt_text) {
    if (parsed->prompt_text->empty() || parsed->prompt_text->size() > (size_t{4} << 20) || !parsed->prompt.empty()) {
      std::abort();
    }
  } else if (parsed->prompt.empty() || parsed->prompt.size() > (size_t{1} << 20)) {
    std::abort();
  }
  return 0;
}
