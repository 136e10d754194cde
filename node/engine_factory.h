// MakeEngine: the engine `--engine` names, loaded for a model directory, with the namespace its
// prefix hashes live in (the model's identity and its KV layout: two nodes share store blocks
// exactly when their KV bytes are interchangeable).
//
//   cpu       DIR/config.json + *.safetensors; fp32 KV in host pages      namespace <identity>|paged<P>|fp32
//   emulated  DIR/config.json only; the config's dtype, host pages         namespace emulated:<config hash>|paged<P>|<dtype>
//   cuda      (built with CUDA) the checkpoint; KV in HBM                  (cuda_engine.h)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kvstash/result.h"
#include "node/emulated_engine.h"
#include "node/engine.h"

namespace kvstash::node {

struct EngineChoice {
  std::string engine = "cpu";
  std::string model_dir;
  size_t threads = 1;              // cpu
  uint32_t page_tokens = 16, block_tokens = 512;
  EmulatedOptions emulated;        // emulated
  int cuda_device = 0;             // cuda
};

struct LoadedEngine {
  std::unique_ptr<Engine> engine;
  std::string namespace_id;
};

// The engines this binary was built with ("cpu", "emulated", and "cuda" where CUDA was found).
std::vector<std::string> AvailableEngines();

// NOT_FOUND / INVALID_ARGUMENT from loading the model; INVALID_ARGUMENT for an engine this binary
// does not have.
Result<LoadedEngine> MakeEngine(const EngineChoice& choice);

}  // namespace kvstash::node
