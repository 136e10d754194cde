// Host <-> CUDA copies for the Python module: where a put's source or a get's destination is device
// memory, block bytes pass through one pinned host buffer per call (the "staged" GPU data path,
// gpu/gpu_data_path.h). Built without CUDA, every function here throws.
//
// REQUIRES: called without the GIL (they block on the device). Thread-safety: any thread.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace kvstash::python {

// Whether this module was built with CUDA, and why not.
bool BuiltWithCuda();

// Page-locked host memory when CUDA is built in (freed on destruction).
class HostStaging {
 public:
  explicit HostStaging(size_t bytes);
  ~HostStaging();
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  std::byte* data() const { return data_; }

 private:
  std::byte* data_ = nullptr;
};

// Synchronous copies on the legacy default stream (ordered after work queued there, as torch's
// default stream is). Throw std::runtime_error with CUDA's message on failure.
void CopyDeviceToHost(std::byte* host, const std::byte* device, size_t bytes);
void CopyHostToDevice(std::byte* device, const std::byte* host, size_t bytes);
void SynchronizeDevice();

}  // namespace kvstash::python
