// The node's gRPC requests (proto/kvstash/v1/node.proto) checked and turned into runtime requests,
// once, at the edge: every field is validated before anything is queued, and a refusal is
// INVALID_ARGUMENT naming the field ("prompt_token_ids[3]", "sampling.top_p").
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvstash/result.h"
#include "kvstash/v1/node.pb.h"
#include "node/runtime.h"
#include "node/tokenizer.h"

namespace kvstash::node {

struct RequestLimits {
  uint32_t vocab_size = 0;       // the model's
  uint32_t context_tokens = 0;   // prompt + max_tokens at most this
  size_t max_request_bytes = 1 << 20;  // the serialized request; also bounds prompt_text
  size_t max_stop_tokens = 64;
};

inline constexpr uint32_t kDefaultMaxTokens = 16;
inline constexpr uint32_t kMaxMaxTokens = 4096;  // as SamplingParams::Validate
inline constexpr uint32_t kDefaultStoreWaitMs = 5'000;
inline constexpr uint32_t kMaxStoreWaitMs = 60'000;

// A request as the runtime takes it, and whether its prompt came as text.
struct ParsedRequest {
  CompletionRequest request;
  bool prompt_was_text = false;
};

// `tokenizer` may be null: text prompts are then refused. With one, its EOS joins the stop tokens
// (unless sampling.ignore_eos).
Result<ParsedRequest> ParseGenerateRequest(const v1::GenerateRequest& req, const Tokenizer* tokenizer,
                                           const RequestLimits& limits);
// As Generate (the whole request is checked, max_tokens included), plus store_wait_ms.
Result<ParsedRequest> ParsePrefillRequest(const v1::PrefillRequest& req, const Tokenizer* tokenizer,
                                          const RequestLimits& limits, uint32_t* store_wait_ms);

}  // namespace kvstash::node
