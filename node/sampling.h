// Sampling: greedy, or seeded temperature / top-p. A request's sampler draws from its own
// generator seeded by the request, so its tokens do not depend on what else is in the batch.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "kvstash/result.h"

namespace kvstash::node {

struct SamplingParams {
  uint32_t max_tokens = 16;           // tokens to generate, 1..4096
  double temperature = 0.0;           // 0 = greedy; otherwise 0 < t <= 100
  double top_p = 1.0;                 // 0 < p <= 1: sample from the smallest set of tokens whose mass reaches p
  uint64_t seed = 0;                  // the request's generator seed (temperature > 0)
  std::vector<uint32_t> stop_tokens;  // end the sequence when one is generated (EOS); each < vocab

  // INVALID_ARGUMENT naming the field.
  Status Validate(uint32_t vocab_size) const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  // The next token given the logits of the last position (vocab_size floats). Greedy picks the
  // lowest id among equal maxima.
  uint32_t Next(std::span<const float> logits);
  // Accounts for a token chosen elsewhere with these parameters (a prefill node's first token
  // handed to this decode node): the next draw is the one a single node would make.
  void Skip() {
    if (params_.temperature != 0.0) rng_();
  }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace kvstash::node
