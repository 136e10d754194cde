// kvstash-node's `POST /v1/completions` body (the fields are listed in node/http_api.h) read into
// a CompletionRequest: the prompt as token ids or text (encoded with the tokenizer, BOS first),
// the sampling fields with OpenAI's defaults, the tokenizer's EOS as a stop unless "ignore_eos",
// "stream" and kvstash's "kvstash_request_id". OpenAI fields the node cannot honour (n, best_of,
// echo, stop strings) are refused rather than ignored.
#pragma once

#include <string>

#include "kvstash/result.h"
#include "node/runtime.h"
#include "node/tokenizer.h"

namespace kvstash::node {

struct ParsedCompletion {
  CompletionRequest request;
  bool stream = false;
};

// INVALID_ARGUMENT, naming the field, for a body that is not a JSON object, a field of the wrong
// type or out of range, a missing prompt, or a text prompt that cannot be encoded (no tokenizer,
// not UTF-8). `tokenizer` may be null (token-id prompts only).
Result<ParsedCompletion> ParseCompletion(const std::string& text, const Tokenizer* tokenizer);

}  // namespace kvstash::node
