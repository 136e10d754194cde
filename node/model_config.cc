#include "node/model_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

namespace kvstash::node {
namespace {

using nlohmann::json;

struct DTypeNames {
  DType dtype;
  std::string_view safetensors, torch;
};
constexpr DTypeNames kDTypes[] = {{DType::kF32, "F32", "float32"},
                                  {DType::kF16, "F16", "float16"},
                                  {DType::kBF16, "BF16", "bfloat16"}};

Status FieldError(const std::string& field, const std::string& problem) {
  return InvalidArgument(field + ": " + problem);
}

Status CheckSize(const char* field, uint32_t value, uint32_t max) {
  if (value == 0) return FieldError(field, "must be > 0");
  if (value > max)
    return FieldError(field, std::to_string(value) + " exceeds the limit " + std::to_string(max));
  return Status::Ok();
}

Status CheckPositive(const char* field, double value) {
  if (!std::isfinite(value) || value <= 0) return FieldError(field, "must be a finite number > 0");
  return Status::Ok();
}

// Reads an unsigned 32-bit field; `required` decides whether absence is an error.
Status ReadU32(const json& j, const char* field, bool required, uint32_t* out) {
  auto it = j.find(field);
  if (it == j.end()) return required ? FieldError(field, "missing") : Status::Ok();
  if (!it->is_number_unsigned())  // nlohmann parses every non-negative integer as unsigned
    return FieldError(field, "expected an unsigned integer, got " + it->dump());
  const uint64_t v = it->get<uint64_t>();
  if (v > std::numeric_limits<uint32_t>::max())
    return FieldError(field, it->dump() + " is too large");
  *out = static_cast<uint32_t>(v);
  return Status::Ok();
}

Status ReadDouble(const json& j, const char* field, double* out) {
  auto it = j.find(field);
  if (it == j.end()) return Status::Ok();
  if (!it->is_number()) return FieldError(field, "expected a number, got " + it->dump());
  *out = it->get<double>();
  return Status::Ok();
}

Status ReadBool(const json& j, const char* field, bool* out) {
  auto it = j.find(field);
  if (it == j.end()) return Status::Ok();
  if (!it->is_boolean()) return FieldError(field, "expected true or false, got " + it->dump());
  *out = it->get<bool>();
  return Status::Ok();
}

Status ReadDType(const json& j, DType* out) {
  const char* field = j.contains("torch_dtype") ? "torch_dtype" : "dtype";
  auto it = j.find(field);
  if (it == j.end()) return Status::Ok();
  if (!it->is_string()) return FieldError(field, "expected a string, got " + it->dump());
  auto dtype = DTypeFromTorchName(it->get<std::string>());
  if (!dtype.ok()) return FieldError(field, dtype.status().message());
  *out = *dtype;
  return Status::Ok();
}

// Keys this runtime does not implement: refused when present with a non-default value.
Status CheckUnsupported(const json& j, const ModelConfig& c) {
  if (auto it = j.find("head_dim"); it != j.end() && !it->is_null() && c.num_attention_heads != 0) {
    if (!it->is_number_integer() ||
        it->get<int64_t>() != int64_t{c.hidden_size / c.num_attention_heads})
      return FieldError(
          "head_dim", it->dump() + " differs from hidden_size / num_attention_heads (unsupported)");
  }
  if (auto it = j.find("hidden_act"); it != j.end() && *it != "silu")
    return FieldError("hidden_act", it->dump() + " is unsupported (only \"silu\")");
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null())
    return FieldError("rope_scaling", "is unsupported (must be null or absent)");
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    if (auto it = j.find(bias); it != j.end() && *it != false)
      return FieldError(bias, it->dump() + " is unsupported (must be false)");
  }
  return Status::Ok();
}

Status ParseFields(const json& j, ModelConfig* c) {
  if (!j.is_object()) return InvalidArgument("expected a JSON object");
  KVSTASH_RETURN_IF_ERROR(ReadU32(j, "hidden_size", true, &c->hidden_size));
  KVSTASH_RETURN_IF_ERROR(ReadU32(j, "num_hidden_layers", true, &c->num_hidden_layers));
  KVSTASH_RETURN_IF_ERROR(ReadU32(j, "num_attention_heads", true, &c->num_attention_heads));
  c->num_key_value_heads = c->num_attention_heads;
  KVSTASH_RETURN_IF_ERROR(ReadU32(j, "num_key_value_heads", false, &c->num_key_value_heads));
  KVSTASH_RETURN_IF_ERROR(ReadU32(j, "intermediate_size", true, &c->intermediate_size));
  KVSTASH_RETURN_IF_ERROR(ReadU32(j, "vocab_size", true, &c->vocab_size));
  KVSTASH_RETURN_IF_ERROR(ReadU32(j, "max_position_embeddings", true, &c->max_position_embeddings));
  KVSTASH_RETURN_IF_ERROR(ReadDouble(j, "rope_theta", &c->rope_theta));
  KVSTASH_RETURN_IF_ERROR(ReadDouble(j, "rms_norm_eps", &c->rms_norm_eps));
  KVSTASH_RETURN_IF_ERROR(ReadBool(j, "tie_word_embeddings", &c->tie_word_embeddings));
  KVSTASH_RETURN_IF_ERROR(ReadDType(j, &c->torch_dtype));
  KVSTASH_RETURN_IF_ERROR(c->Validate());
  return CheckUnsupported(j, *c);
}

}  // namespace

std::string_view DTypeName(DType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d.safetensors;
  return "?";
}

std::string_view TorchDTypeName(DType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d.torch;
  return "?";
}

size_t DTypeBytes(DType dtype) { return dtype == DType::kF32 ? 4 : 2; }

Result<DType> DTypeFromName(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.safetensors == name) return d.dtype;
  return InvalidArgument("unknown dtype \"" + std::string(name) + "\" (expected F32, F16 or BF16)");
}

Result<DType> DTypeFromTorchName(std::string_view name) {
  for (const auto& d : kDTypes)
    if (d.torch == name) return d.dtype;
  return InvalidArgument("unknown dtype \"" + std::string(name) +
                         "\" (expected float32, float16 or bfloat16)");
}

Status ModelConfig::Validate() const {
  KVSTASH_RETURN_IF_ERROR(CheckSize("hidden_size", hidden_size, kMaxHiddenSize));
  KVSTASH_RETURN_IF_ERROR(CheckSize("num_hidden_layers", num_hidden_layers, kMaxLayers));
  KVSTASH_RETURN_IF_ERROR(CheckSize("num_attention_heads", num_attention_heads, kMaxHeads));
  KVSTASH_RETURN_IF_ERROR(CheckSize("num_key_value_heads", num_key_value_heads, kMaxHeads));
  KVSTASH_RETURN_IF_ERROR(CheckSize("intermediate_size", intermediate_size, kMaxIntermediateSize));
  KVSTASH_RETURN_IF_ERROR(CheckSize("vocab_size", vocab_size, kMaxVocabSize));
  KVSTASH_RETURN_IF_ERROR(
      CheckSize("max_position_embeddings", max_position_embeddings, kMaxPositionEmbeddings));
  if (hidden_size % num_attention_heads != 0)
    return FieldError("num_attention_heads", std::to_string(num_attention_heads) +
                                                 " does not divide hidden_size " +
                                                 std::to_string(hidden_size));
  if (num_attention_heads % num_key_value_heads != 0)
    return FieldError("num_key_value_heads", std::to_string(num_key_value_heads) +
                                                 " does not divide num_attention_heads " +
                                                 std::to_string(num_attention_heads));
  if (head_dim() % 2 != 0)
    return FieldError("num_attention_heads",
                      "head_dim " + std::to_string(head_dim()) + " is odd (rotary needs pairs)");
  KVSTASH_RETURN_IF_ERROR(CheckPositive("rope_theta", rope_theta));
  KVSTASH_RETURN_IF_ERROR(CheckPositive("rms_norm_eps", rms_norm_eps));
  return Status::Ok();
}

Result<ModelConfig> ModelConfig::FromJson(std::string_view text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return InvalidArgument(origin + ": not JSON: " + e.what());
  }
  ModelConfig config;
  if (Status s = ParseFields(j, &config); !s.ok())
    return InvalidArgument(origin + ": " + s.message());
  return config;
}

std::string ModelConfig::ToJson() const {
  nlohmann::ordered_json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["intermediate_size"] = intermediate_size;
  j["vocab_size"] = vocab_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rope_theta"] = rope_theta;
  j["rms_norm_eps"] = rms_norm_eps;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = TorchDTypeName(torch_dtype);
  return j.dump(2) + "\n";
}

Result<ModelConfig> LoadModelConfig(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    return NotFound(file.string() + ": no such file");
  std::ifstream in(file, std::ios::binary);
  if (!in) return NotFound(file.string() + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return NotFound(file.string() + ": read failed");
  return ModelConfig::FromJson(text.str(), file.string());
}

}  // namespace kvstash::node
