// Profile: measured (or modelled) timing points that CostModel::Fit turns into coefficients.
//
// File format (text, one entry per line, '#' starts a comment, blank lines ignored):
//   prefill <input_tokens n> <cached_tokens p> <seconds>    one prefill of n tokens, p of them
//   cached decode  <batch_size> <context_tokens> <seconds>         one decode step of a batch
//   holding
//                                                           context_tokens tokens in total
// Requirements: 0 <= p < n <= 10^7, seconds > 0 and finite, 1 <= batch <= 10^5, context >= batch;
// at least 3 prefill and 3 decode points spanning distinct (n − p, n² − p²) and (batch, context).
//
// Thread-safety: plain values and functions.
#pragma once

#include <string>
#include <vector>

#include "kvstash/result.h"
#include "scheduler/model_spec.h"

namespace kvstash::scheduler {

struct PrefillPoint {
  double n = 0, p = 0, seconds = 0;
};
struct DecodePoint {
  double batch = 0, context = 0, seconds = 0;
};

struct Profile {
  std::vector<PrefillPoint> prefill;
  std::vector<DecodePoint> decode;
};

// INVALID_ARGUMENT naming origin:line for a malformed entry; NOT_FOUND when the file cannot be
// read.
Result<Profile> LoadProfile(const std::string& path);
Result<Profile> ParseProfile(const std::string& text, const std::string& origin);
std::string FormatProfile(const Profile& profile);

// The analytic profile of model_spec.h sampled on a grid (n up to 128k tokens, several cached
// fractions; batch 1..128 with contexts up to 16M tokens).
Profile DefaultProfile(const ModelSpec& spec);

}  // namespace kvstash::scheduler
