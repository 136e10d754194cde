#include "node/grpc_requests.h"

#include <cmath>
#include <string>

namespace kvstash::node {
namespace {

std::string At(const char* field, int index) { return std::string(field) + "[" + std::to_string(index) + "]"; }

Status CheckSize(size_t bytes, const RequestLimits& limits) {
  if (bytes > limits.max_request_bytes) {
    return InvalidArgument("the request is " + std::to_string(bytes) + " bytes; the limit is " +
                           std::to_string(limits.max_request_bytes));
  }
  return Status::Ok();
}

Result<std::vector<uint32_t>> ParsePrompt(const google::protobuf::RepeatedField<uint32_t>& ids,
                                          const std::string& text, const Tokenizer* tokenizer,
                                          const RequestLimits& limits, bool* was_text) {
  *was_text = false;
  if (!ids.empty() && !text.empty()) {
    return InvalidArgument("prompt_token_ids and prompt_text are both set: send the prompt one way");
  }
  std::vector<uint32_t> prompt;
  if (!text.empty()) {
    if (tokenizer == nullptr) {
      return InvalidArgument("prompt_text: this model has no tokenizer (tokenizer.model in its directory): "
                             "send prompt_token_ids");
    }
    Result<std::vector<uint32_t>> encoded = tokenizer->Encode(text);
    if (!encoded.ok()) return InvalidArgument("prompt_text: " + encoded.status().message());
    prompt = std::move(*encoded);
    *was_text = true;
  } else {
    if (ids.empty()) return InvalidArgument("the prompt is empty: set prompt_token_ids or prompt_text");
    if (static_cast<size_t>(ids.size()) > limits.context_tokens) {
      return InvalidArgument("prompt_token_ids has " + std::to_string(ids.size()) + " tokens; the context is " +
                             std::to_string(limits.context_tokens));
    }
    for (int i = 0; i < ids.size(); ++i) {
      if (ids[i] >= limits.vocab_size) {
        return InvalidArgument(At("prompt_token_ids", i) + " is " + std::to_string(ids[i]) +
                               "; the vocabulary has " + std::to_string(limits.vocab_size) + " ids");
      }
    }
    prompt.assign(ids.begin(), ids.end());
  }
  // A tokenizer's ids are below its own vocabulary, which serve checks is within the model's; a
  // text prompt can still be longer than the context.
  if (prompt.size() > limits.context_tokens) {
    return InvalidArgument("prompt_text encodes to " + std::to_string(prompt.size()) + " tokens; the context is " +
                           std::to_string(limits.context_tokens));
  }
  return prompt;
}

Result<SamplingParams> ParseSampling(bool present, const v1::SamplingParams& in, const RequestLimits& limits) {
  SamplingParams s;
  s.max_tokens = kDefaultMaxTokens;
  s.temperature = 0.0;
  s.top_p = 1.0;
  if (!present) return s;
  if (in.has_max_tokens()) {
    if (in.max_tokens() == 0 || in.max_tokens() > kMaxMaxTokens) {
      return InvalidArgument("sampling.max_tokens is " + std::to_string(in.max_tokens()) + "; it must be 1.." +
                             std::to_string(kMaxMaxTokens));
    }
    s.max_tokens = in.max_tokens();
  }
  if (in.has_temperature()) {
    if (!(in.temperature() >= 0.0 && in.temperature() <= 100.0)) {  // refuses NaN too
      return InvalidArgument("sampling.temperature must be 0 (greedy) or in (0, 100]");
    }
    s.temperature = in.temperature();
  }
  if (in.has_top_p()) {
    if (!(in.top_p() > 0.0 && in.top_p() <= 1.0)) return InvalidArgument("sampling.top_p must be in (0, 1]");
    s.top_p = in.top_p();
  }
  s.seed = in.seed();
  if (static_cast<size_t>(in.stop_token_ids_size()) > limits.max_stop_tokens) {
    return InvalidArgument("sampling.stop_token_ids has " + std::to_string(in.stop_token_ids_size()) +
                           " ids; the limit is " + std::to_string(limits.max_stop_tokens));
  }
  for (int i = 0; i < in.stop_token_ids_size(); ++i) {
    if (in.stop_token_ids(i) >= limits.vocab_size) {
      return InvalidArgument(At("sampling.stop_token_ids", i) + " is " + std::to_string(in.stop_token_ids(i)) +
                             "; the vocabulary has " + std::to_string(limits.vocab_size) + " ids");
    }
    s.stop_tokens.push_back(in.stop_token_ids(i));
  }
  return s;
}

template <typename Req>
Result<ParsedRequest> ParseCommon(const Req& req, const Tokenizer* tokenizer, const RequestLimits& limits) {
  KVSTASH_RETURN_IF_ERROR(CheckSize(req.ByteSizeLong(), limits));
  ParsedRequest out;
  KVSTASH_ASSIGN_OR_RETURN(out.request.prompt, ParsePrompt(req.prompt_token_ids(), req.prompt_text(), tokenizer,
                                                           limits, &out.prompt_was_text));
  KVSTASH_ASSIGN_OR_RETURN(out.request.sampling, ParseSampling(req.has_sampling(), req.sampling(), limits));
  AddEosStop(tokenizer, req.sampling().ignore_eos(), out.request.sampling.stop_tokens);
  if (req.has_request_id()) out.request.request_id = req.request_id();
  if (req.has_handoff()) {
    Result<BlockKey> key = BlockKey::FromBytes(req.handoff().tail_key());
    if (!key.ok()) return InvalidArgument("handoff.tail_key must be exactly 16 bytes");
    CompletionRequest::Handoff handoff{*key, std::nullopt};
    if (req.handoff().layerwise() && req.handoff().has_first_token()) {
      return InvalidArgument("handoff.first_token: a layer-wise handoff's first token comes with its KV");
    }
    if (req.handoff().has_first_token()) {
      if (req.handoff().first_token() >= limits.vocab_size) {
        return InvalidArgument("handoff.first_token is " + std::to_string(req.handoff().first_token()) +
                               "; the vocabulary has " + std::to_string(limits.vocab_size) + " ids");
      }
      handoff.first_token = req.handoff().first_token();
    }
    out.request.handoff = handoff;
  }
  const size_t total = out.request.prompt.size() + out.request.sampling.max_tokens;
  if (total > limits.context_tokens) {
    return InvalidArgument("the prompt (" + std::to_string(out.request.prompt.size()) +
                           " tokens) plus sampling.max_tokens (" + std::to_string(out.request.sampling.max_tokens) +
                           ") exceeds the context of " + std::to_string(limits.context_tokens));
  }
  return out;
}

}  // namespace

Result<ParsedRequest> ParseGenerateRequest(const v1::GenerateRequest& req, const Tokenizer* tokenizer,
                                           const RequestLimits& limits) {
  if (req.has_handoff() && !req.handoff().has_first_token() && !req.handoff().layerwise()) {
    return InvalidArgument("handoff.first_token: Generate takes a handoff with the prefill node's first token");
  }
  Result<ParsedRequest> parsed = ParseCommon(req, tokenizer, limits);
  if (parsed.ok() && parsed->request.handoff) parsed->request.handoff->receive_layers = req.handoff().layerwise();
  return parsed;
}

Result<ParsedRequest> ParsePrefillRequest(const v1::PrefillRequest& req, const Tokenizer* tokenizer,
                                          const RequestLimits& limits, uint32_t* store_wait_ms) {
  if (req.has_handoff() && req.handoff().has_first_token()) {
    return InvalidArgument("handoff.first_token: only Generate takes it (Prefill chooses the first token)");
  }
  KVSTASH_ASSIGN_OR_RETURN(ParsedRequest out, ParseCommon(req, tokenizer, limits));
  if (out.request.handoff) out.request.handoff->send_layers = req.handoff().layerwise();
  *store_wait_ms = kDefaultStoreWaitMs;
  if (req.has_store_wait_ms()) {
    if (req.store_wait_ms() > kMaxStoreWaitMs) {
      return InvalidArgument("store_wait_ms is " + std::to_string(req.store_wait_ms()) + "; the limit is " +
                             std::to_string(kMaxStoreWaitMs));
    }
    *store_wait_ms = req.store_wait_ms();
  }
  return out;
}

}  // namespace kvstash::node
