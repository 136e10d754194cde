// The standard Hugging Face names and shapes of a Llama-family checkpoint's tensors.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "node/model_config.h"

namespace kvstash::node {

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> shape;  // row-major, [out_features, in_features] for a projection
};

// "model.layers.<layer>.<suffix>", e.g. LayerTensorName(3, "self_attn.q_proj.weight").
std::string LayerTensorName(uint32_t layer, const std::string& suffix);

// Every tensor a checkpoint of `config` holds, in this order: model.embed_tokens.weight
// [vocab, hidden]; per layer N: input_layernorm.weight [hidden], self_attn.{q_proj [heads*hd,
// hidden], k_proj [kv*hd, hidden], v_proj [kv*hd, hidden], o_proj [hidden, heads*hd]}.weight,
// post_attention_layernorm.weight [hidden], mlp.{gate_proj [inter, hidden], up_proj [inter,
// hidden], down_proj [hidden, inter]}.weight; model.norm.weight [hidden]; lm_head.weight [vocab,
// hidden] unless tie_word_embeddings. REQUIRES: config.Validate() is OK.
std::vector<TensorSpec> LlamaTensors(const ModelConfig& config);

}  // namespace kvstash::node
