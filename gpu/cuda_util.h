// CUDA runtime helpers shared by the gpu module: errors as Status, device discovery, RAII owners of
// device memory, pinned host memory, streams and events.
//
// Thread-safety: the free functions are safe from any thread; each owner object belongs to one
// thread at a time.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "kvstash/result.h"

namespace kvstash::gpu {

// OK for cudaSuccess, else INTERNAL "<what>: <cudaGetErrorName>: <cudaGetErrorString>"
// (UNAVAILABLE for no device / no driver, RESOURCE_EXHAUSTED for out of memory).
Status CudaStatus(cudaError_t error, std::string_view what);

struct DeviceSummary {
  int count = 0;         // usable CUDA devices; 0 when none
  std::string reason;    // why none, when count == 0 (the runtime's words)
};
// Never fails: a host without driver or device reports count 0 and the reason.
DeviceSummary ProbeDevices();

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 50 MiB L2, 79.1 GiB" for `device`.
Result<std::string> DescribeDevice(int device);

class DeviceBuffer {
 public:
  static Result<DeviceBuffer> Allocate(size_t bytes);
  DeviceBuffer() = default;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  ~DeviceBuffer();
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Page-locked host memory (cudaMallocHost): what the copy engines reach at full speed.
class PinnedBuffer {
 public:
  static Result<PinnedBuffer> Allocate(size_t bytes);
  PinnedBuffer() = default;
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  ~PinnedBuffer();
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Existing host memory page-locked for the copy engines (cudaHostRegister, portable to every
// device) while the object lives: the daemon's DRAM arena, so copies between it and an HBM tier
// run at pinned-memory speed without a bounce through driver staging.
class HostRegistration {
 public:
  static Result<HostRegistration> Register(void* base, size_t bytes);
  HostRegistration() = default;
  HostRegistration(HostRegistration&& other) noexcept;
  HostRegistration& operator=(HostRegistration&& other) noexcept;
  ~HostRegistration();
  void* base() const { return base_; }

 private:
  void* base_ = nullptr;
};

class Stream {
 public:
  static Result<Stream> Create();  // non-blocking with respect to the legacy default stream
  Stream() = default;
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  ~Stream();
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class Event {
 public:
  static Result<Event> Create(bool timing = false);
  Event() = default;
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  ~Event();
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// True when `p` is device (or managed) memory by the runtime's account; false for host memory,
// pinned or not. An error (no device) reads as false.
bool IsDevicePointer(const void* p);

}  // namespace kvstash::gpu
