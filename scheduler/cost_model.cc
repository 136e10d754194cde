#include "scheduler/cost_model.h"

#include <algorithm>

#include "scheduler/least_squares.h"

namespace kvstash::scheduler {

Result<CostModel> CostModel::Fit(const Profile& profile, const ModelSpec& spec,
                                 uint32_t decode_max_batch) {
  if (spec.block_tokens == 0) return InvalidArgument("block_tokens must be positive");
  if (spec.nic_gbits_s <= 0) return InvalidArgument("bandwidths must be positive");
  if (decode_max_batch == 0) return InvalidArgument("decode max batch must be positive");
  std::vector<std::vector<double>> rows;
  std::vector<double> y;
  for (const auto& pt : profile.prefill) {
    rows.push_back({1.0, pt.n - pt.p, pt.n * pt.n - pt.p * pt.p});
    y.push_back(pt.seconds);
  }
  auto prefill = LeastSquares(rows, y);
  if (!prefill.ok()) return InvalidArgument("prefill profile: " + prefill.status().message());
  rows.clear();
  y.clear();
  for (const auto& pt : profile.decode) {
    rows.push_back({1.0, pt.batch, pt.context});
    y.push_back(pt.seconds);
  }
  auto decode = LeastSquares(rows, y);
  if (!decode.ok()) return InvalidArgument("decode profile: " + decode.status().message());

  CostModel m;
  std::copy(prefill->begin(), prefill->end(), m.prefill.begin());
  std::copy(decode->begin(), decode->end(), m.decode.begin());
  m.kv_bytes_per_block = spec.KvBytesPerBlock();
  m.block_tokens = spec.block_tokens;
  m.nic_bytes_s = spec.nic_gbits_s * 1e9 / 8;
  m.decode_kv_tokens = spec.DecodeKvCapacityTokens();
  m.decode_max_batch = decode_max_batch;
  return m;
}

double CostModel::PrefillSeconds(uint64_t input_tokens, uint64_t cached_tokens) const {
  const double n = double(input_tokens);
  const double p = double(std::min(cached_tokens, input_tokens));
  return std::max(0.0, prefill[0] + prefill[1] * (n - p) + prefill[2] * (n * n - p * p));
}

double CostModel::DecodeStepSeconds(uint64_t batch, uint64_t context_tokens) const {
  return std::max(0.0, decode[0] + decode[1] * double(batch) + decode[2] * double(context_tokens));
}

double CostModel::TransferSeconds(uint64_t blocks) const {
  return blocks == 0 ? 0.0 : double(blocks) * double(kv_bytes_per_block) / nic_bytes_s;
}

uint64_t CostModel::CachedTokens(uint64_t input_tokens, uint64_t blocks) const {
  if (input_tokens == 0) return 0;
  return std::min(blocks * block_tokens, input_tokens - 1);
}

}  // namespace kvstash::scheduler
