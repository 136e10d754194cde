// ModelSpec: the model and hardware constants from which kvstash derives its default cost profile.
// Defaults follow the Mooncake paper's Table 1 (LLaMA3-70B: l=80, d=8192, a=4, b=22, gqa=8, 2-byte
// elements) on an 8-GPU instance of 312 TFLOPS each, with a stated MFU, 128 GB/s host-to-device and
// an 800 Gbps NIC. Every field is exposed as a kvstash-sim flag (replay_cmd.cc).
//
// Formulas (Table 1 and §5 of the paper):
//   prefill FLOPs(n, p)   = l · (a · d · (n² − p²) + b · d² · (n − p))    n prompt tokens, p cached
//   KV bytes per token    = l · 2 · (d / gqa) · s                        K and V of every layer
//   decode step seconds   = (weight bytes + KV bytes of the batch) / (HBM bandwidth · MBU)
//                           + batch · 2 · params / (peak FLOPS · MFU)
//
// Thread-safety: a plain value.
#pragma once

#include <cstdint>

namespace kvstash::scheduler {

struct ModelSpec {
  // Model.
  uint32_t layers = 80;      // l
  uint32_t hidden = 8192;    // d
  double attn_coeff = 4;     // a
  double linear_coeff = 22;  // b
  uint32_t gqa = 8;          // query heads per KV head
  uint32_t elem_bytes = 2;   // s (fp16/bf16)
  double params = 70.6e9;    // weights, for decode memory traffic
  // One instance.
  uint32_t gpus = 8;
  double gpu_tflops = 312;      // peak dense fp16 per GPU
  double mfu = 0.45;            // model FLOPs utilisation during prefill (and decode compute)
  double hbm_gbytes_s = 2039;   // HBM bandwidth per GPU, GB/s
  double mbu = 0.6;             // memory bandwidth utilisation during decode
  double hbm_gib_per_gpu = 80;  // decode KV capacity = gpus · this − weights
  double h2d_gbytes_s = 128;    // host (DRAM cache) to device, GB/s; local reuse is loaded layer by
                                // layer, overlapped with compute, so it adds no TTFT in the model
  double nic_gbits_s = 800;     // instance-to-instance network, Gbit/s
  uint32_t block_tokens = 512;

  uint64_t KvBytesPerToken() const { return uint64_t{layers} * 2 * (hidden / gqa) * elem_bytes; }
  uint64_t KvBytesPerBlock() const { return KvBytesPerToken() * block_tokens; }
  double PeakFlops() const { return gpus * gpu_tflops * 1e12; }
  double HbmBytesPerSecond() const { return gpus * hbm_gbytes_s * 1e9; }
  double WeightBytes() const { return params * elem_bytes; }
  // Analytic prefill seconds for n prompt tokens of which the first p are cached.
  double PrefillSeconds(double n, double p) const {
    const double flops = layers * (attn_coeff * hidden * (n * n - p * p) +
                                   linear_coeff * double(hidden) * hidden * (n - p));
    return flops / (PeakFlops() * mfu);
  }
  // Analytic decode step seconds for `batch` sequences holding `context_tokens` tokens in total.
  double DecodeStepSeconds(double batch, double context_tokens) const {
    return (WeightBytes() + context_tokens * KvBytesPerToken()) / (HbmBytesPerSecond() * mbu) +
           batch * 2 * params / (PeakFlops() * mfu);
  }
  // Tokens of KV that fit on a decode instance after the weights.
  uint64_t DecodeKvCapacityTokens() const {
    const double bytes = gpus * hbm_gib_per_gpu * 1073741824.0 - WeightBytes();
    return bytes <= 0 ? 0 : uint64_t(bytes / KvBytesPerToken());
  }
};

}  // namespace kvstash::scheduler
