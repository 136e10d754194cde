#include "client/python/device_copy.h"

#include <stdexcept>

#ifdef KVSTASH_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "gpu/cuda_util.h"
#endif

namespace kvstash::python {

#ifdef KVSTASH_HAVE_CUDA

namespace {
void Check(cudaError_t err, const char* what) {
  const Status st = gpu::CudaStatus(err, what);
  if (!st.ok()) throw std::runtime_error(st.ToString());
}
}  // namespace

bool BuiltWithCuda() { return true; }

HostStaging::HostStaging(size_t bytes) {
  void* p = nullptr;
  Check(cudaMallocHost(&p, bytes == 0 ? 1 : bytes), "cudaMallocHost for staging");
  data_ = static_cast<std::byte*>(p);
}
HostStaging::~HostStaging() {
  if (data_ != nullptr) cudaFreeHost(data_);
}
void CopyDeviceToHost(std::byte* host, const std::byte* device, size_t bytes) {
  Check(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, nullptr), "staging device-to-host copy");
}
void CopyHostToDevice(std::byte* device, const std::byte* host, size_t bytes) {
  Check(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, nullptr), "staging host-to-device copy");
}
void SynchronizeDevice() { Check(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize"); }

#else

namespace {
[[noreturn]] void NoCuda() {
  throw std::runtime_error("kvstash was built without CUDA: CUDA tensors cannot be read or written");
}
}  // namespace

bool BuiltWithCuda() { return false; }
HostStaging::HostStaging(size_t) { NoCuda(); }
HostStaging::~HostStaging() = default;
void CopyDeviceToHost(std::byte*, const std::byte*, size_t) { NoCuda(); }
void CopyHostToDevice(std::byte*, const std::byte*, size_t) { NoCuda(); }
void SynchronizeDevice() { NoCuda(); }

#endif

}  // namespace kvstash::python
