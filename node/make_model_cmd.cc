// kvstash-node make-model: writes a checkpoint with seeded random weights and reads it back.
#include <cstdio>
#include <memory>
#include <string>

#include "node/checkpoint.h"
#include "node/commands.h"
#include "node/random_model.h"

namespace kvstash::node {
namespace {

struct MakeModelOptions {
  std::string config, out;
  uint64_t seed = 0;
};

std::string Hex(const std::array<uint8_t, 16>& bytes) {
  std::string out;
  char buf[3];
  for (uint8_t b : bytes) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "kvstash-node: make-model: %s\n", s.ToString().c_str());
  return 1;
}

int RunMakeModel(const MakeModelOptions& opt) {
  auto config = LoadModelConfig(opt.config);
  if (!config.ok()) return Fail(config.status());
  if (Status s = MakeRandomModel(*config, opt.seed, opt.out); !s.ok()) return Fail(s);
  auto ckpt = Checkpoint::Open(opt.out);  // read back: the files parse, and the identity to print
  if (!ckpt.ok()) return Fail(ckpt.status());
  uint64_t params = 0;
  const auto weights = std::filesystem::path(opt.out) / "model.safetensors";
  auto file = SafetensorsFile::Open(weights);
  if (!file.ok()) return Fail(file.status());
  for (const TensorView& t : (*file)->tensors()) params += t.elements();
  std::printf("wrote %s and %s: %zu tensors, %llu parameters in %s, %llu bytes; identity %s\n",
              (std::filesystem::path(opt.out) / "config.json").c_str(), weights.c_str(),
              (*file)->tensors().size(), static_cast<unsigned long long>(params),
              std::string(DTypeName(config->torch_dtype)).c_str(),
              static_cast<unsigned long long>(std::filesystem::file_size(weights)),
              Hex((*ckpt)->Identity()).c_str());
  return 0;
}

}  // namespace

void RegisterMakeModelCommand(CLI::App& app, int* exit_code) {
  auto opt = std::make_shared<MakeModelOptions>();
  CLI::App* cmd = app.add_subcommand("make-model", "write a checkpoint with seeded random weights");
  cmd->add_option("--config", opt->config, "a Hugging Face style config.json (Llama family)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--seed", opt->seed, "random seed")->required();
  cmd->add_option("--out", opt->out, "directory to write config.json and model.safetensors into")
      ->required();
  cmd->callback([opt, exit_code] { *exit_code = RunMakeModel(*opt); });
}

}  // namespace kvstash::node
