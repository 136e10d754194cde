#include "gpu/kv_sample.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace kvstash::gpu {

void FillRealisticKv(const BlockShape& s, uint64_t seed, std::byte* raw) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> unit(0.0f, 1.0f);
  const uint32_t eb = DTypeBytes(s.dtype);
  std::vector<float> factor;
  for (uint32_t l = 0; l < s.layers; ++l) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      for (uint32_t h = 0; h < s.heads; ++h) {
        const float sigma = std::exp(0.5f * unit(rng));
        const uint32_t n = kv == 0 ? s.head_dim : s.tokens;  // K: per channel, V: per token
        factor.assign(n, 0.0f);
        for (float& f : factor) f = std::exp(0.3f * unit(rng));
        if (kv == 0) {
          for (int k = 0; k < 2 && s.head_dim > 2; ++k) factor[rng() % s.head_dim] *= 8.0f;
        }
        for (uint32_t t = 0; t < s.tokens; ++t) {
          for (uint32_t d = 0; d < s.head_dim; ++d) {
            const float x = unit(rng) * sigma * factor[kv == 0 ? d : t];
            const uint64_t i = ((((uint64_t{l} * 2 + kv) * s.tokens + t) * s.heads + h) * s.head_dim) + d;
            std::byte* p = raw + i * eb;
            if (s.dtype == KvDType::kF32) {
              std::memcpy(p, &x, 4);
            } else {
              const uint16_t b = s.dtype == KvDType::kF16 ? FloatToHalf(x) : FloatToBFloat16(x);
              std::memcpy(p, &b, 2);
            }
          }
        }
      }
    }
  }
}

}  // namespace kvstash::gpu
