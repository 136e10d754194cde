#include "node/engine_factory.h"

#include <xxhash.h>

#include <cstdio>
#include <filesystem>

#include "node/checkpoint.h"
#include "node/cpu_engine.h"
#ifdef KVSTASH_NODE_CUDA
#include "node/cuda_engine.h"
#endif

namespace kvstash::node {
namespace {

std::string Hex(const uint8_t* bytes, size_t n) {
  std::string hex;
  char buf[3];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", bytes[i]);
    hex += buf;
  }
  return hex;
}

std::string KvDtypeName(uint32_t element_bytes, DType model_dtype) {
  if (element_bytes == 4) return "fp32";
  return model_dtype == DType::kBF16 ? "bf16" : "fp16";
}

Result<LoadedEngine> MakeCpu(const EngineChoice& c) {
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(c.model_dir));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<CpuEngine> engine, CpuEngine::Load(*checkpoint, {c.threads}));
  const auto id = checkpoint->Identity();
  LoadedEngine loaded;
  loaded.namespace_id = Hex(id.data(), id.size()) + "|paged" + std::to_string(c.page_tokens) + "|fp32";
  loaded.engine = std::move(engine);
  return loaded;
}

Result<LoadedEngine> MakeEmulated(const EngineChoice& c) {
  KVSTASH_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(std::filesystem::path(c.model_dir) / "config.json"));
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<EmulatedEngine> engine,
                           EmulatedEngine::Create(config, c.emulated, c.block_tokens));
  const std::string json = config.ToJson();
  XXH128_canonical_t id;
  XXH128_canonicalFromHash(&id, XXH3_128bits(json.data(), json.size()));
  LoadedEngine loaded;
  loaded.namespace_id = "emulated:" + Hex(id.digest, sizeof id.digest) + "|paged" + std::to_string(c.page_tokens) +
                        "|" + KvDtypeName(engine->kv_geometry().element_bytes, config.torch_dtype);
  // Scaled KV is other bytes: its blocks never mix with the true-size ones.
  const KvGeometry g = engine->kv_geometry();
  if (g.head_dim != config.head_dim() || g.kv_heads != config.num_key_value_heads || g.layers != config.num_hidden_layers) {
    loaded.namespace_id += "|kv" + std::to_string(g.layers) + "x" + std::to_string(g.kv_heads) + "x" + std::to_string(g.head_dim);
  }
  loaded.engine = std::move(engine);
  return loaded;
}

#ifdef KVSTASH_NODE_CUDA
// The cuda engine: the checkpoint's 16-bit KV in HBM on --cuda-device.
Result<LoadedEngine> MakeCuda(const EngineChoice& c) {
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(c.model_dir));
  CudaEngineOptions options;
  options.device = c.cuda_device;
  KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<CudaEngine> engine, CudaEngine::Load(*checkpoint, options));
  const auto id = checkpoint->Identity();
  LoadedEngine loaded;
  loaded.namespace_id = Hex(id.data(), id.size()) + "|paged" + std::to_string(c.page_tokens) + "|" +
                        std::string(engine->kv_dtype_name());
  loaded.engine = std::move(engine);
  return loaded;
}
#endif

}  // namespace

std::vector<std::string> AvailableEngines() {
  std::vector<std::string> engines = {"cpu", "emulated"};
#ifdef KVSTASH_NODE_CUDA
  engines.push_back("cuda");
#endif
  return engines;
}

Result<LoadedEngine> MakeEngine(const EngineChoice& c) {
  if (c.engine == "cpu") return MakeCpu(c);
  if (c.engine == "emulated") return MakeEmulated(c);
#ifdef KVSTASH_NODE_CUDA
  if (c.engine == "cuda") return MakeCuda(c);
#endif
  return InvalidArgument("engine \"" + c.engine + "\" is not built into this kvstash-node (it has: cpu, emulated" +
#ifdef KVSTASH_NODE_CUDA
                         std::string(", cuda") +
#endif
                         ")");
}

}  // namespace kvstash::node
