// The front door's completion request: OpenAI's /v1/completions body as kvstash.v1.Node sampling
// parameters. Types are checked here (a clear INVALID_ARGUMENT naming the field); ranges are the
// node's to check, and its INVALID_ARGUMENT comes back to the client as 400.
//
// Thread-safety: a plain value and a pure function.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvstash/result.h"
#include "kvstash/v1/node.pb.h"

namespace kvstash::scheduler {

struct Completion {
  std::vector<uint32_t> prompt;  // token ids (of prompt_text once the front door encoded it)
  std::optional<std::string> prompt_text;  // a text prompt (UTF-8 checked when it is encoded)
  v1::SamplingParams sampling;
  uint32_t max_tokens = 16;  // the node's default when unset
  bool stream = false;
};

// `prompt` (1..2^20 token ids, or a non-empty string of at most 4 MiB: the front door encodes it
// with its tokenizer), `max_tokens`, `temperature`, `top_p`, `seed`, `stop_token_ids`, `ignore_eos`,
// `stream`; `n`/`best_of` other than 1, `echo` and stop strings are refused rather than ignored.
Result<Completion> ParseCompletion(const std::string& body);

}  // namespace kvstash::scheduler
