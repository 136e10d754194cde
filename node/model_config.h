// ModelConfig: the shape of a Llama-family decoder (RMSNorm, rotary embeddings, grouped-query
// attention, SwiGLU MLP), read from and written as a Hugging Face style config.json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "kvstash/result.h"
#include "kvstash/status.h"

namespace kvstash::node {

// Element types a checkpoint may store. Values are stable (they are hashed into Identity()).
enum class DType : uint8_t { kF32, kF16, kBF16 };

std::string_view DTypeName(DType dtype);       // "F32", "F16", "BF16": safetensors' names
size_t DTypeBytes(DType dtype);                // 4, 2, 2
std::string_view TorchDTypeName(DType dtype);  // "float32", "float16", "bfloat16"
// INVALID_ARGUMENT naming `name` when it is not one of DTypeName's (or TorchDTypeName's) values.
Result<DType> DTypeFromName(std::string_view name);
Result<DType> DTypeFromTorchName(std::string_view name);

struct ModelConfig {
  uint32_t hidden_size = 0, num_hidden_layers = 0, num_attention_heads = 0, num_key_value_heads = 0;
  uint32_t intermediate_size = 0, vocab_size = 0, max_position_embeddings = 0;
  double rope_theta = 10000.0, rms_norm_eps = 1e-5;
  bool tie_word_embeddings = false;
  DType torch_dtype = DType::kF32;  // "float32" | "float16" | "bfloat16" in the JSON

  // REQUIRES: num_attention_heads > 0 (Validate() passed).
  uint32_t head_dim() const { return hidden_size / num_attention_heads; }

  // OK, or INVALID_ARGUMENT naming the first offending field: a zero size, heads not dividing
  // hidden_size, kv heads not dividing heads, an odd head_dim (rotary pairs), a size past the
  // limits below, a non-positive or non-finite rope_theta or rms_norm_eps.
  Status Validate() const;

  // Parses and validates a config.json. num_key_value_heads defaults to num_attention_heads when
  // absent; torch_dtype (or the newer "dtype") defaults to float32; other keys are ignored, except
  // those whose non-default value would change the math this runtime implements: "head_dim" must
  // equal hidden_size / num_attention_heads, "hidden_act" must be "silu", "rope_scaling" must be
  // null, "attention_bias" and "mlp_bias" must be false. Every error starts with `origin`.
  static Result<ModelConfig> FromJson(std::string_view text, const std::string& origin);

  // A config.json for this config (2-space indented, fixed key order, so equal configs give equal
  // text), with "architectures": ["LlamaForCausalLM"] and "model_type": "llama".
  std::string ToJson() const;
};

inline constexpr uint32_t kMaxHiddenSize = 1u << 16;
inline constexpr uint32_t kMaxLayers = 1024;
inline constexpr uint32_t kMaxHeads = 1024;
inline constexpr uint32_t kMaxIntermediateSize = 1u << 20;
inline constexpr uint32_t kMaxVocabSize = 1u << 24;
inline constexpr uint32_t kMaxPositionEmbeddings = 1u << 24;

// Reads `file` and parses it with FromJson (origin = the path). NOT_FOUND if it cannot be read.
Result<ModelConfig> LoadModelConfig(const std::filesystem::path& file);

}  // namespace kvstash::node
