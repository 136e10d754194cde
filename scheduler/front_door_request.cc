#include "scheduler/front_door_request.h"

#include <limits>
#include <nlohmann/json.hpp>

namespace kvstash::scheduler {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxPromptTokens = size_t{1} << 20;
constexpr size_t kMaxPromptTextBytes = size_t{4} << 20;

Result<uint64_t> Unsigned(const json& j, const std::string& field, uint64_t max) {
  if (!j.is_number_unsigned() || j.get<uint64_t>() > max) {
    return InvalidArgument(field + ": must be an integer in 0.." + std::to_string(max));
  }
  return j.get<uint64_t>();
}

}  // namespace

Result<Completion> ParseCompletion(const std::string& body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("the body must be a JSON object");
  Completion c;
  const auto prompt = j.find("prompt");
  if (prompt == j.end()) return InvalidArgument("prompt: required (an array of token ids, or text)");
  if (prompt->is_string()) {
    const std::string& text = prompt->get_ref<const std::string&>();
    if (text.empty() || text.size() > kMaxPromptTextBytes) {
      return InvalidArgument("prompt: text must have 1.." + std::to_string(kMaxPromptTextBytes) + " bytes");
    }
    c.prompt_text = text;
  } else if (!prompt->is_array() || prompt->empty() || prompt->size() > kMaxPromptTokens) {
    return InvalidArgument("prompt: must be an array of 1.." + std::to_string(kMaxPromptTokens) + " token ids");
  }
  for (size_t i = 0; !c.prompt_text && i < prompt->size(); ++i) {
    KVSTASH_ASSIGN_OR_RETURN(uint64_t t, Unsigned((*prompt)[i], "prompt[" + std::to_string(i) + "]",
                                                  std::numeric_limits<uint32_t>::max()));
    c.prompt.push_back(static_cast<uint32_t>(t));
  }
  // OpenAI fields the cluster does not implement are refused rather than ignored (as the node does).
  for (const char* field : {"n", "best_of"}) {
    if (j.contains(field) && !(j[field].is_number_integer() && j[field].get<int64_t>() == 1)) {
      return InvalidArgument(std::string(field) + ": only 1 is supported");
    }
  }
  if (j.contains("echo") && !(j["echo"].is_boolean() && !j["echo"].get<bool>())) {
    return InvalidArgument("echo: not supported");
  }
  if (const auto stop = j.find("stop"); stop != j.end() && !stop->is_null() && !(stop->is_string() && stop->empty()) &&
                                        !(stop->is_array() && stop->empty())) {
    return InvalidArgument("stop: stop strings need a tokenizer; use stop_token_ids");
  }
  if (const auto v = j.find("max_tokens"); v != j.end() && !v->is_null()) {
    KVSTASH_ASSIGN_OR_RETURN(uint64_t n, Unsigned(*v, "max_tokens", std::numeric_limits<uint32_t>::max()));
    c.max_tokens = static_cast<uint32_t>(n);
    c.sampling.set_max_tokens(c.max_tokens);
  }
  for (const char* field : {"temperature", "top_p"}) {
    const auto v = j.find(field);
    if (v == j.end() || v->is_null()) continue;
    if (!v->is_number()) return InvalidArgument(std::string(field) + ": must be a number");
    if (std::string(field) == "temperature") {
      c.sampling.set_temperature(v->get<double>());
    } else {
      c.sampling.set_top_p(v->get<double>());
    }
  }
  if (const auto v = j.find("seed"); v != j.end() && !v->is_null()) {
    KVSTASH_ASSIGN_OR_RETURN(uint64_t seed, Unsigned(*v, "seed", std::numeric_limits<uint64_t>::max()));
    c.sampling.set_seed(seed);
  }
  if (const auto v = j.find("stop_token_ids"); v != j.end() && !v->is_null()) {
    if (!v->is_array()) return InvalidArgument("stop_token_ids: must be an array of token ids");
    for (size_t i = 0; i < v->size(); ++i) {
      KVSTASH_ASSIGN_OR_RETURN(uint64_t t, Unsigned((*v)[i], "stop_token_ids[" + std::to_string(i) + "]",
                                                    std::numeric_limits<uint32_t>::max()));
      c.sampling.add_stop_token_ids(static_cast<uint32_t>(t));
    }
  }
  if (const auto v = j.find("ignore_eos"); v != j.end() && !v->is_null()) {
    if (!v->is_boolean()) return InvalidArgument("ignore_eos: must be true or false");
    c.sampling.set_ignore_eos(v->get<bool>());
  }
  if (const auto v = j.find("stream"); v != j.end() && !v->is_null()) {
    if (!v->is_boolean()) return InvalidArgument("stream: must be true or false");
    c.stream = v->get<bool>();
  }
  return c;
}

}  // namespace kvstash::scheduler
