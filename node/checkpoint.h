// Checkpoint: a model directory holding config.json and one or more *.safetensors files (a
// Hugging Face layout; model.safetensors.index.json, tokenizer files and the like are ignored).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstash/result.h"
#include "node/model_config.h"
#include "node/safetensors.h"

namespace kvstash::node {

// Immutable after Open: every method is safe to call from many threads at once.
class Checkpoint {
 public:
  // Parses and validates DIR/config.json and maps and validates every DIR/*.safetensors (sorted
  // by file name). NOT_FOUND when config.json or every *.safetensors is missing; INVALID_ARGUMENT
  // for a bad config, a malformed safetensors file, or one tensor name in two files. Whether the
  // tensors match the config is checked by LoadF32's callers (each passes the shape it expects).
  static Result<std::unique_ptr<Checkpoint>> Open(const std::filesystem::path& dir);

  const ModelConfig& config() const { return config_; }
  const std::filesystem::path& dir() const { return dir_; }

  // The tensor upcast to fp32 (F16 and BF16 exactly), after checking its shape equals `shape`.
  // NOT_FOUND or INVALID_ARGUMENT naming the tensor.
  Result<std::vector<float>> LoadF32(std::string_view name, std::span<const uint64_t> shape) const;

  // The raw tensor (bytes valid while this Checkpoint lives); nullptr when absent.
  const TensorView* Find(std::string_view name) const;

  // 16 bytes identifying the model (the namespace of its prefix hashes): XXH3-128, in canonical
  // big-endian byte order, over config().ToJson() and every tensor's name, dtype and shape in name
  // order. Weights' values are not hashed (so opening a large model stays cheap).
  std::array<uint8_t, 16> Identity() const { return identity_; }

 private:
  Checkpoint() = default;
  Status AddFile(std::unique_ptr<SafetensorsFile> file);
  void ComputeIdentity();

  std::filesystem::path dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*, std::less<>> tensors_;  // points into files_
  std::array<uint8_t, 16> identity_{};
};

// Every value of `view` as fp32. REQUIRES: view.bytes.size() == elements() * DTypeBytes(dtype).
std::vector<float> UpcastToF32(const TensorView& view);

}  // namespace kvstash::node
