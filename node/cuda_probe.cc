#include "node/cuda_probe.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gpu/cuda_util.h"
#include "node/float16.h"

namespace kvstash::node {

using gpu::CudaStatus;

namespace {
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

Result<std::string> CudaDeviceName(int device) { return gpu::DescribeDevice(device); }

Result<double> MeasureHostToDevice(int device, size_t bytes, bool pinned, int reps) {
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "cudaSetDevice"));
  KVSTASH_ASSIGN_OR_RETURN(gpu::DeviceBuffer dst, gpu::DeviceBuffer::Allocate(bytes));
  gpu::PinnedBuffer pinned_src;
  std::vector<std::byte> pageable_src;
  std::byte* src = nullptr;
  if (pinned) {
    KVSTASH_ASSIGN_OR_RETURN(pinned_src, gpu::PinnedBuffer::Allocate(bytes));
    src = pinned_src.data();
  } else {
    pageable_src.resize(bytes);
    src = pageable_src.data();
  }
  std::memset(src, 0x5a, bytes);
  KVSTASH_ASSIGN_OR_RETURN(gpu::Stream stream, gpu::Stream::Create());
  std::vector<double> seconds;
  for (int r = 0; r <= reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    KVSTASH_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpyAsync(dst.data(), src, bytes, cudaMemcpyHostToDevice, stream.get()), "H2D copy"));
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(stream.get()), "H2D copy"));
    if (r > 0) seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return static_cast<double>(bytes) / Median(seconds) / 1e9;
}

Result<double> MeasureGemmTflops(int device, size_t m, size_t n, size_t k, int reps) {
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "cudaSetDevice"));
  KVSTASH_ASSIGN_OR_RETURN(gpu::DeviceBuffer a, gpu::DeviceBuffer::Allocate(m * k * 2));
  KVSTASH_ASSIGN_OR_RETURN(gpu::DeviceBuffer b, gpu::DeviceBuffer::Allocate(k * n * 2));
  KVSTASH_ASSIGN_OR_RETURN(gpu::DeviceBuffer c, gpu::DeviceBuffer::Allocate(m * n * 2));
  {  // random bf16 in [-1, 1): never time zeros
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<uint16_t> host(std::max(m * k, k * n));
    for (auto& v : host) v = F32ToBf16(u(rng));
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaMemcpy(a.data(), host.data(), m * k * 2, cudaMemcpyHostToDevice), "upload"));
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaMemcpy(b.data(), host.data(), k * n * 2, cudaMemcpyHostToDevice), "upload"));
  }
  cublasHandle_t blas = nullptr;
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) return Internal("cublasCreate failed");
  KVSTASH_ASSIGN_OR_RETURN(gpu::Event begin, gpu::Event::Create(true));
  KVSTASH_ASSIGN_OR_RETURN(gpu::Event end, gpu::Event::Create(true));
  const float alpha = 1.0f, beta = 0.0f;
  std::vector<double> seconds;
  Status status = Status::Ok();
  for (int r = -3; r < reps && status.ok(); ++r) {
    cudaEventRecord(begin.get(), nullptr);
    const cublasStatus_t s =
        cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                     &alpha, a.data(), CUDA_R_16BF, static_cast<int>(k), b.data(), CUDA_R_16BF, static_cast<int>(k),
                     &beta, c.data(), CUDA_R_16BF, static_cast<int>(m), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) status = Internal(std::string("cublasGemmEx: ") + cublasGetStatusName(s));
    cudaEventRecord(end.get(), nullptr);
    if (status.ok()) status = CudaStatus(cudaEventSynchronize(end.get()), "GEMM");
    float ms = 0;
    cudaEventElapsedTime(&ms, begin.get(), end.get());
    if (r >= 0) seconds.push_back(ms / 1e3);
  }
  cublasDestroy(blas);
  KVSTASH_RETURN_IF_ERROR(status);
  return 2.0 * static_cast<double>(m) * n * k / Median(seconds) / 1e12;
}

}  // namespace kvstash::node
