#include "node/cuda_page_memory.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "gpu/cuda_util.h"

namespace kvstash::node {

using gpu::CudaStatus;

Result<std::unique_ptr<CudaPageMemory>> CudaPageMemory::Allocate(size_t bytes, int device, cudaStream_t stream,
                                                                 const CudaPageMemoryOptions& options) {
  if (bytes == 0) return InvalidArgument("a page pool of 0 bytes");
  if (options.slots == 0 || options.slot_bytes == 0) return InvalidArgument("page memory staging needs slots");
  std::unique_ptr<CudaPageMemory> m(new CudaPageMemory());
  m->device_ = device;
  m->stream_ = stream;
  m->options_ = options;
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "cudaSetDevice"));
  void* base = nullptr;
  KVSTASH_RETURN_IF_ERROR(
      CudaStatus(cudaMalloc(&base, bytes), "cudaMalloc of a " + std::to_string(bytes) + "-byte KV page pool"));
  m->base_ = static_cast<std::byte*>(base);
  m->size_ = bytes;
  MutexLock lock(m->mu_);  // not shared yet: taken for the analysis' rule, never contended
  m->slots_.resize(options.slots);
  for (Slot& slot : m->slots_) {
    void* host = nullptr;
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaMallocHost(&host, options.slot_bytes), "cudaMallocHost (KV staging)"));
    slot.host = static_cast<std::byte*>(host);
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaEventCreateWithFlags(&slot.done, cudaEventDisableTiming), "cudaEventCreate"));
  }
  return m;
}

CudaPageMemory::~CudaPageMemory() {
  (void)Flush();
  for (Slot& slot : slots_) {
    if (slot.done != nullptr) cudaEventDestroy(slot.done);
    if (slot.host != nullptr) cudaFreeHost(slot.host);
  }
  if (base_ != nullptr) cudaFree(base_);
}

Status CudaPageMemory::WaitSlot(size_t i) const {
  return CudaStatus(cudaEventSynchronize(slots_[i].done), "waiting for a KV staging slot");
}

Status CudaPageMemory::Flush() const {
  MutexLock lock(mu_);
  cudaSetDevice(device_);
  return CudaStatus(cudaStreamSynchronize(stream_), "KV page copies");
}

namespace {
bool IsPinnedHost(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeHost;
}
}  // namespace

Status CudaPageMemory::CopyIn(size_t offset, std::span<const std::byte> src) {
  if (offset > size_ || src.size() > size_ - offset) return InvalidArgument("a page copy past the pool's end");
  if (src.empty()) return Status::Ok();
  MutexLock lock(mu_);
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
  std::byte* dst = base_ + offset;
  if (IsPinnedHost(src.data())) {
    KVSTASH_RETURN_IF_ERROR(CudaStatus(
        cudaMemcpyAsync(dst, src.data(), src.size(), cudaMemcpyHostToDevice, stream_), "KV page copy to HBM"));
    return CudaStatus(cudaStreamSynchronize(stream_), "KV page copy to HBM");
  }
  if (options_.driver_staging) {
    // The driver copies pageable memory into its own staging before this returns.
    return CudaStatus(cudaMemcpyAsync(dst, src.data(), src.size(), cudaMemcpyHostToDevice, stream_),
                      "KV page copy to HBM");
  }
  for (size_t done = 0; done < src.size();) {
    const size_t n = std::min(options_.slot_bytes, src.size() - done);
    const size_t i = next_slot_;
    next_slot_ = (next_slot_ + 1) % slots_.size();
    KVSTASH_RETURN_IF_ERROR(WaitSlot(i));
    std::memcpy(slots_[i].host, src.data() + done, n);
    KVSTASH_RETURN_IF_ERROR(
        CudaStatus(cudaMemcpyAsync(dst + done, slots_[i].host, n, cudaMemcpyHostToDevice, stream_), "KV page copy"));
    KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(slots_[i].done, stream_), "cudaEventRecord"));
    done += n;
  }
  return Status::Ok();
}

Status CudaPageMemory::CopyOut(size_t offset, std::span<std::byte> dst) const {
  if (offset > size_ || dst.size() > size_ - offset) return InvalidArgument("a page copy past the pool's end");
  if (dst.empty()) return Status::Ok();
  MutexLock lock(mu_);
  KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device_), "cudaSetDevice"));
  const std::byte* src = base_ + offset;
  if (IsPinnedHost(dst.data())) {
    KVSTASH_RETURN_IF_ERROR(CudaStatus(
        cudaMemcpyAsync(dst.data(), src, dst.size(), cudaMemcpyDeviceToHost, stream_), "KV page copy from HBM"));
    return CudaStatus(cudaStreamSynchronize(stream_), "KV page copy from HBM");
  }
  // Queue every chunk's DMA (up to the ring's size), then copy each out as it lands.
  for (size_t base = 0; base < dst.size();) {
    const size_t batch_end = std::min(dst.size(), base + slots_.size() * options_.slot_bytes);
    size_t queued = 0;
    for (size_t at = base; at < batch_end; at += options_.slot_bytes, ++queued) {
      const size_t n = std::min(options_.slot_bytes, batch_end - at);
      KVSTASH_RETURN_IF_ERROR(WaitSlot(queued));
      KVSTASH_RETURN_IF_ERROR(CudaStatus(
          cudaMemcpyAsync(slots_[queued].host, src + at, n, cudaMemcpyDeviceToHost, stream_), "KV page copy"));
      KVSTASH_RETURN_IF_ERROR(CudaStatus(cudaEventRecord(slots_[queued].done, stream_), "cudaEventRecord"));
    }
    size_t k = 0;
    for (size_t at = base; at < batch_end; at += options_.slot_bytes, ++k) {
      const size_t n = std::min(options_.slot_bytes, batch_end - at);
      KVSTASH_RETURN_IF_ERROR(WaitSlot(k));
      std::memcpy(dst.data() + at, slots_[k].host, n);
    }
    base = batch_end;
  }
  next_slot_ = 0;
  return Status::Ok();
}

}  // namespace kvstash::node
