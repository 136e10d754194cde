// The two ceilings kvstash-bench-node prints beside the cuda engine's TTFT, measured on the same
// card in the same run: the pinned host-to-device copy rate (what loading a fetched prefix into HBM
// can reach) and the bf16 GEMM rate cuBLAS reaches (what prefill compute can reach).
#pragma once

#include <cstddef>
#include <string>

#include "kvstash/result.h"

namespace kvstash::node {

// GB/s (1e9 bytes/s) of one cudaMemcpyAsync of `bytes` from pinned (cudaMallocHost) host memory to
// device memory, the median of `reps` after one warm-up; `pinned` false: from pageable memory.
Result<double> MeasureHostToDevice(int device, size_t bytes, bool pinned, int reps = 5);

// TFLOP/s (2·m·n·k per product) of cublasGemmEx with bf16 inputs, fp32 accumulation and bf16
// output on random data, the median of `reps` after warm-ups, timed with CUDA events.
Result<double> MeasureGemmTflops(int device, size_t m, size_t n, size_t k, int reps = 20);

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 50 MiB L2, 79.1 GiB".
Result<std::string> CudaDeviceName(int device);

}  // namespace kvstash::node
