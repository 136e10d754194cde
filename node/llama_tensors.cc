#include "node/llama_tensors.h"

namespace kvstash::node {

std::string LayerTensorName(uint32_t layer, const std::string& suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

std::vector<TensorSpec> LlamaTensors(const ModelConfig& c) {
  const uint64_t hidden = c.hidden_size, inter = c.intermediate_size, vocab = c.vocab_size;
  const uint64_t q_out = uint64_t{c.num_attention_heads} * c.head_dim();
  const uint64_t kv_out = uint64_t{c.num_key_value_heads} * c.head_dim();
  std::vector<TensorSpec> out;
  out.push_back({"model.embed_tokens.weight", {vocab, hidden}});
  for (uint32_t l = 0; l < c.num_hidden_layers; ++l) {
    out.push_back({LayerTensorName(l, "input_layernorm.weight"), {hidden}});
    out.push_back({LayerTensorName(l, "self_attn.q_proj.weight"), {q_out, hidden}});
    out.push_back({LayerTensorName(l, "self_attn.k_proj.weight"), {kv_out, hidden}});
    out.push_back({LayerTensorName(l, "self_attn.v_proj.weight"), {kv_out, hidden}});
    out.push_back({LayerTensorName(l, "self_attn.o_proj.weight"), {hidden, q_out}});
    out.push_back({LayerTensorName(l, "post_attention_layernorm.weight"), {hidden}});
    out.push_back({LayerTensorName(l, "mlp.gate_proj.weight"), {inter, hidden}});
    out.push_back({LayerTensorName(l, "mlp.up_proj.weight"), {inter, hidden}});
    out.push_back({LayerTensorName(l, "mlp.down_proj.weight"), {hidden, inter}});
  }
  out.push_back({"model.norm.weight", {hidden}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {vocab, hidden}});
  return out;
}

}  // namespace kvstash::node
