// Reading kvstash-node's completion request body (contract in node/http_completion_request.h).
#include "node/http_completion_request.h"

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

namespace kvstash::node {
namespace {

using nlohmann::json;

// body[field] when present and not null.
const json* Field(const json& body, const char* field) {
  auto it = body.find(field);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

Result<uint64_t> ReadUnsigned(const json& body, const char* field, uint64_t fallback, uint64_t max) {
  const json* v = Field(body, field);
  if (v == nullptr) return fallback;
  if (!v->is_number_unsigned() || v->get<uint64_t>() > max) {
    return InvalidArgument(std::string(field) + " must be an integer from 0 to " + std::to_string(max));
  }
  return v->get<uint64_t>();
}

Result<double> ReadNumber(const json& body, const char* field, double fallback) {
  const json* v = Field(body, field);
  if (v == nullptr) return fallback;
  if (!v->is_number()) return InvalidArgument(std::string(field) + " must be a number");
  return v->get<double>();
}

Result<bool> ReadBool(const json& body, const char* field, bool fallback) {
  const json* v = Field(body, field);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return InvalidArgument(std::string(field) + " must be true or false");
  return v->get<bool>();
}

// A JSON array of token ids (each an integer that fits 32 bits); `what` names it in errors.
Result<std::vector<uint32_t>> ReadTokenIds(const json& v, const std::string& what) {
  if (!v.is_array()) return InvalidArgument(what + " must be an array of token ids");
  std::vector<uint32_t> ids;
  ids.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].is_array()) {
      return InvalidArgument(what + " holds arrays: batched prompts are not supported, send one prompt per request");
    }
    if (!v[i].is_number_unsigned() || v[i].get<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
      return InvalidArgument(what + "[" + std::to_string(i) + "] must be a token id (an integer >= 0)");
    }
    ids.push_back(static_cast<uint32_t>(v[i].get<uint64_t>()));
  }
  return ids;
}

Result<std::vector<uint32_t>> ReadPrompt(const json& body, const Tokenizer* tokenizer) {
  const json* v = Field(body, "prompt");
  if (v == nullptr) return InvalidArgument("prompt is required: text or an array of token ids");
  if (v->is_string()) {
    if (tokenizer == nullptr) {
      return InvalidArgument("this model has no tokenizer (tokenizer.model): send the prompt as an array of token ids");
    }
    const std::string& text = v->get_ref<const std::string&>();
    if (text.empty()) return InvalidArgument("prompt is an empty string");
    Result<std::vector<uint32_t>> ids = tokenizer->Encode(text);
    if (!ids.ok()) return InvalidArgument("prompt: " + ids.status().message());
    return ids;
  }
  return ReadTokenIds(*v, "prompt");
}

// OpenAI fields kvstash-node cannot honour are refused rather than ignored.
Status CheckUnsupported(const json& body) {
  KVSTASH_ASSIGN_OR_RETURN(uint64_t n, ReadUnsigned(body, "n", 1, 1'000'000));
  KVSTASH_ASSIGN_OR_RETURN(uint64_t best_of, ReadUnsigned(body, "best_of", 1, 1'000'000));
  if (n != 1 || best_of != 1) return InvalidArgument("n and best_of must be 1");
  KVSTASH_ASSIGN_OR_RETURN(bool echo, ReadBool(body, "echo", false));
  if (echo) return InvalidArgument("echo is not supported");
  if (const json* stop = Field(body, "stop"); stop != nullptr && !stop->empty() && *stop != "") {
    return InvalidArgument("stop strings are not supported: use stop_token_ids");
  }
  return Status::Ok();
}

}  // namespace

Result<ParsedCompletion> ParseCompletion(const std::string& text, const Tokenizer* tokenizer) {
  const json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return InvalidArgument("the body is not valid JSON");
  if (!body.is_object()) return InvalidArgument("the body must be a JSON object");
  KVSTASH_RETURN_IF_ERROR(CheckUnsupported(body));
  ParsedCompletion out;
  KVSTASH_ASSIGN_OR_RETURN(out.request.prompt, ReadPrompt(body, tokenizer));
  SamplingParams& s = out.request.sampling;
  KVSTASH_ASSIGN_OR_RETURN(uint64_t max_tokens,
                           ReadUnsigned(body, "max_tokens", s.max_tokens, std::numeric_limits<uint32_t>::max()));
  s.max_tokens = static_cast<uint32_t>(max_tokens);
  KVSTASH_ASSIGN_OR_RETURN(s.temperature, ReadNumber(body, "temperature", 1.0));
  KVSTASH_ASSIGN_OR_RETURN(s.top_p, ReadNumber(body, "top_p", 1.0));
  KVSTASH_ASSIGN_OR_RETURN(s.seed, ReadUnsigned(body, "seed", 0, std::numeric_limits<uint64_t>::max()));
  if (const json* stops = Field(body, "stop_token_ids"); stops != nullptr) {
    KVSTASH_ASSIGN_OR_RETURN(s.stop_tokens, ReadTokenIds(*stops, "stop_token_ids"));
  }
  KVSTASH_ASSIGN_OR_RETURN(bool ignore_eos, ReadBool(body, "ignore_eos", false));
  AddEosStop(tokenizer, ignore_eos, s.stop_tokens);
  KVSTASH_ASSIGN_OR_RETURN(out.stream, ReadBool(body, "stream", false));
  // kvstash's extension: the conductor's request id (its Route's), so the TTFT is reported back.
  if (Field(body, "kvstash_request_id") != nullptr) {
    KVSTASH_ASSIGN_OR_RETURN(out.request.request_id,
                             ReadUnsigned(body, "kvstash_request_id", 0, std::numeric_limits<uint64_t>::max()));
  }
  return out;
}

}  // namespace kvstash::node
