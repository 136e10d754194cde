// A small seeded Llama checkpoint in a temporary directory, for kvstash-node's tests: GQA
// (4 query heads, 2 KV heads), hidden 64, 2 layers, vocabulary 97. Removed with the object.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include "node/model_config.h"
#include "node/random_model.h"

namespace kvstash::testing {

inline node::ModelConfig TinyLlamaConfig(uint32_t max_positions = 512) {
  node::ModelConfig c;
  c.hidden_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.intermediate_size = 128;
  c.vocab_size = 97;
  c.max_position_embeddings = max_positions;
  return c;
}

class TinyModelDir {
 public:
  // `tag` keeps concurrent tests' directories apart.
  TinyModelDir(const node::ModelConfig& config, uint64_t seed, const std::string& tag)
      : path_(std::filesystem::temp_directory_path() / ("kvstash_" + tag + "_" + std::to_string(::getpid()))),
        made_(node::MakeRandomModel(config, seed, path_)) {}
  ~TinyModelDir() { std::filesystem::remove_all(path_); }
  TinyModelDir(const TinyModelDir&) = delete;
  TinyModelDir& operator=(const TinyModelDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const Status& status() const { return made_; }

 private:
  std::filesystem::path path_;
  Status made_;
};

}  // namespace kvstash::testing
