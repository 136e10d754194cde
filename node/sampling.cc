#include "node/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace kvstash::node {

Status SamplingParams::Validate(uint32_t vocab_size) const {
  if (max_tokens == 0 || max_tokens > 4096) {
    return InvalidArgument("max_tokens is " + std::to_string(max_tokens) + "; it must be 1..4096");
  }
  if (!(temperature >= 0.0 && temperature <= 100.0)) {  // also refuses NaN
    return InvalidArgument("temperature must be 0 (greedy) or in (0, 100]");
  }
  if (!(top_p > 0.0 && top_p <= 1.0)) return InvalidArgument("top_p must be in (0, 1]");
  for (uint32_t t : stop_tokens) {
    if (t >= vocab_size) {
      return InvalidArgument("stop token " + std::to_string(t) + " is outside the vocabulary of " +
                             std::to_string(vocab_size));
    }
  }
  return Status::Ok();
}

uint32_t Sampler::Next(std::span<const float> logits) {
  if (params_.temperature == 0.0) {
    return static_cast<uint32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // softmax(logits / T) in double, then the top-p nucleus in order of probability (ties by id).
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> probs(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    probs[i] = std::exp((static_cast<double>(logits[i]) - max_logit) / params_.temperature);
    sum += probs[i];
  }
  std::vector<uint32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return probs[a] > probs[b]; });
  double mass = 0.0;
  size_t keep = 0;
  while (keep < order.size()) {
    mass += probs[order[keep]] / sum;
    ++keep;
    if (mass >= params_.top_p) break;
  }
  // A uniform draw in [0, mass) from the top 53 bits: the same on every platform.
  const double draw = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * mass;
  double seen = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    seen += probs[order[i]] / sum;
    if (draw < seen) return order[i];
  }
  return order[keep - 1];
}

}  // namespace kvstash::node
