#include "gpu/cuda_util.h"
#include "gpu/device_fill.h"

namespace kvstash::gpu {

namespace {

__global__ void FillKernel(uint64_t* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
    uint64_t z = seed + i * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    p[i] = (z ^ (z >> 31)) | 1;
  }
}

}  // namespace

Status FillRandom(std::byte* p, size_t bytes, uint64_t seed, cudaStream_t stream) {
  if (bytes < 8) return Status::Ok();
  FillKernel<<<1024, 256, 0, stream>>>(reinterpret_cast<uint64_t*>(p), bytes / 8, seed);
  return CudaStatus(cudaGetLastError(), "launching the random fill kernel");
}

}  // namespace kvstash::gpu
