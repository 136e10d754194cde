// A model's config.json: FromJson refuses it by name, or returns a config that Validate accepts.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "node/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto config = kvstash::node::ModelConfig::FromJson(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (config.ok() && !config->Validate().ok()) std::abort();
  if (config.ok() && config->head_dim() == 0) std::abort();
  return 0;
}
