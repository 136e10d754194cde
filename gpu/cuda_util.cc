#include "gpu/cuda_util.h"

#include <cstdio>
#include <utility>

namespace kvstash::gpu {

Status CudaStatus(cudaError_t error, std::string_view what) {
  if (error == cudaSuccess) return Status::Ok();
  std::string msg = std::string(what) + ": " + cudaGetErrorName(error) + ": " + cudaGetErrorString(error);
  switch (error) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
      return Unavailable(std::move(msg));
    case cudaErrorMemoryAllocation:
      return ResourceExhausted(std::move(msg));
    default:
      return Internal(std::move(msg));
  }
}

DeviceSummary ProbeDevices() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return {0, std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err)};
  }
  if (count == 0) return {0, "the CUDA runtime reports no device"};
  return {count, {}};
}

Result<std::string> DescribeDevice(int device) {
  cudaDeviceProp prop{};
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties"));
  char gib[32];
  std::snprintf(gib, sizeof(gib), "%.1f", static_cast<double>(prop.totalGlobalMem) / (1ULL << 30));
  return std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs, " + std::to_string(prop.l2CacheSize >> 20) + " MiB L2, " +
         gib + " GiB";
}

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer b;
  void* p = nullptr;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&p, bytes), "cudaMalloc of " + std::to_string(bytes) + " bytes"));
  b.data_ = static_cast<std::byte*>(p);
  b.size_ = bytes;
  return b;
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  return *this;
}
DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

Result<HostRegistration> HostRegistration::Register(void* base, size_t bytes) {
  HostRegistration r;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaHostRegister(base, bytes, cudaHostRegisterPortable),
                                     "cudaHostRegister of " + std::to_string(bytes) + " bytes"));
  r.base_ = base;
  return r;
}
HostRegistration::HostRegistration(HostRegistration&& other) noexcept : base_(std::exchange(other.base_, nullptr)) {}
HostRegistration& HostRegistration::operator=(HostRegistration&& other) noexcept {
  std::swap(base_, other.base_);
  return *this;
}
HostRegistration::~HostRegistration() {
  if (base_ != nullptr) (void)cudaHostUnregister(base_);
}

Result<PinnedBuffer> PinnedBuffer::Allocate(size_t bytes) {
  PinnedBuffer b;
  void* p = nullptr;
  KVSTASH_RETURN_IF_ERROR(
      CudaStatus(cudaMallocHost(&p, bytes), "cudaMallocHost of " + std::to_string(bytes) + " bytes"));
  b.data_ = static_cast<std::byte*>(p);
  b.size_ = bytes;
  return b;
}
PinnedBuffer::PinnedBuffer(PinnedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& other) noexcept {
  std::swap(data_, other.data_);
  std::swap(size_, other.size_);
  return *this;
}
PinnedBuffer::~PinnedBuffer() {
  if (data_ != nullptr) cudaFreeHost(data_);
}

Result<Stream> Stream::Create() {
  Stream s;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaStreamCreateWithFlags(&s.stream_, cudaStreamNonBlocking), "cudaStreamCreate"));
  return s;
}
Stream::Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
Stream& Stream::operator=(Stream&& other) noexcept {
  std::swap(stream_, other.stream_);
  return *this;
}
Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Result<Event> Event::Create(bool timing) {
  Event e;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(
      cudaEventCreateWithFlags(&e.event_, timing ? cudaEventDefault : cudaEventDisableTiming), "cudaEventCreate"));
  return e;
}
Event::Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
Event& Event::operator=(Event&& other) noexcept {
  std::swap(event_, other.event_);
  return *this;
}
Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}

bool IsDevicePointer(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

}  // namespace kvstash::gpu
