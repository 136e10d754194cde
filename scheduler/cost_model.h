// CostModel: the three estimates every policy and the simulator use.
//
//   prefill seconds(n, p)          = c0 + c1 · (n − p) + c2 · (n² − p²)
//   decode step seconds(B, ctx)    = d0 + d1 · B + d2 · ctx        B sequences, ctx tokens in total
//   transfer seconds(bytes)        = bytes / bandwidth
//
// The coefficients are fitted by least squares to a profile (profile.h): measured points on real
// hardware, or the analytic default of model_spec.h. The same CostModel value drives the simulated
// cluster (as ground truth) and the policies (as prediction).
//
// Thread-safety: immutable after construction; safe for concurrent use.
#pragma once

#include <array>
#include <cstdint>

#include "kvstash/result.h"
#include "scheduler/model_spec.h"
#include "scheduler/profile.h"

namespace kvstash::scheduler {

struct CostModel {
  std::array<double, 3> prefill{};  // c0, c1, c2
  std::array<double, 3> decode{};   // d0, d1, d2
  uint64_t kv_bytes_per_block = 0;
  uint32_t block_tokens = 512;
  double nic_bytes_s = 0;         // remote prefix fetch between instances
  uint64_t decode_kv_tokens = 0;  // KV capacity of one decode instance
  uint32_t decode_max_batch = 128;

  // Fits the profile's points. INVALID_ARGUMENT when the profile has too few or degenerate points.
  static Result<CostModel> Fit(const Profile& profile, const ModelSpec& spec,
                               uint32_t decode_max_batch);

  double PrefillSeconds(uint64_t input_tokens, uint64_t cached_tokens) const;
  double DecodeStepSeconds(uint64_t batch, uint64_t context_tokens) const;
  double TransferSeconds(uint64_t blocks) const;  // over the NIC
  // Tokens of an n-token prompt whose first `blocks` blocks are cached; at least one token is
  // always computed (the one that yields the first output token).
  uint64_t CachedTokens(uint64_t input_tokens, uint64_t blocks) const;
};

}  // namespace kvstash::scheduler
