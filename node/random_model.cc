#include "node/random_model.h"

#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <numbers>
#include <random>

#include "node/float16.h"
#include "node/llama_tensors.h"
#include "node/safetensors.h"

namespace kvstash::node {
namespace {

// N(0, 1) deviates by Box-Muller from a 64-bit Mersenne Twister (std::normal_distribution is not
// used: its output differs between C++ libraries).
class Normal {
 public:
  explicit Normal(uint64_t seed) : rng_(seed) {}
  double Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(rng_() >> 11) + 1.0) * 0x1p-53;  // (0, 1]
    const double u2 = static_cast<double>(rng_() >> 11) * 0x1p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::mt19937_64 rng_;
  double spare_ = 0;
  bool has_spare_ = false;
};

bool IsNorm(const std::string& name) { return name.ends_with("norm.weight"); }

// The std of a tensor's deviates (see random_model.h); its last dimension is the fan-in.
double Scale(const TensorSpec& spec, const ModelConfig& c) {
  if (IsNorm(spec.name)) return 0.1;
  if (spec.name == "model.embed_tokens.weight" || spec.name == "lm_head.weight")
    return 2.0 / std::sqrt(c.hidden_size);
  return 1.0 / std::sqrt(static_cast<double>(spec.shape.back()));
}

void Store(float v, DType dtype, std::byte* out) {
  if (dtype == DType::kF32) {
    std::memcpy(out, &v, 4);
    return;
  }
  const uint16_t h = dtype == DType::kF16 ? F32ToF16(v) : F32ToBf16(v);
  std::memcpy(out, &h, 2);
}

TensorData RandomTensor(const TensorSpec& spec, const ModelConfig& c, uint64_t seed) {
  TensorData t{spec.name, c.torch_dtype, spec.shape, {}};
  uint64_t n = 1;
  for (uint64_t d : spec.shape) n *= d;
  const size_t width = DTypeBytes(c.torch_dtype);
  t.bytes.resize(n * width);
  Normal normal(XXH3_64bits_withSeed(spec.name.data(), spec.name.size(), seed));
  const double scale = Scale(spec, c), mean = IsNorm(spec.name) ? 1.0 : 0.0;
  for (uint64_t i = 0; i < n; ++i)
    Store(static_cast<float>(mean + scale * normal.Next()), c.torch_dtype,
          t.bytes.data() + i * width);
  return t;
}

Status CheckNoOtherShards(const std::filesystem::path& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
    if (entry.path().extension() == ".safetensors" &&
        entry.path().filename() != "model.safetensors")
      return AlreadyExists(dir.string() + ": already holds " + entry.path().filename().string());
  if (ec) return Internal(dir.string() + ": cannot list: " + ec.message());
  return Status::Ok();
}

Status WriteText(const std::filesystem::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return Internal(file.string() + ": write failed");
  return Status::Ok();
}

}  // namespace

Status MakeRandomModel(const ModelConfig& config, uint64_t seed, const std::filesystem::path& dir) {
  if (Status s = config.Validate(); !s.ok()) return InvalidArgument("model config: " + s.message());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Internal(dir.string() + ": cannot create: " + ec.message());
  KVSTASH_RETURN_IF_ERROR(CheckNoOtherShards(dir));
  std::vector<TensorData> tensors;
  for (const TensorSpec& spec : LlamaTensors(config))
    tensors.push_back(RandomTensor(spec, config, seed));
  KVSTASH_RETURN_IF_ERROR(WriteSafetensors(dir / "model.safetensors", tensors));
  return WriteText(dir / "config.json", config.ToJson());
}

}  // namespace kvstash::node
