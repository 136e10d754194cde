// CudaPageMemory: a KvPagePool's pages in HBM (one cudaMalloc), for the cuda engine.
//
// Copies go on the engine's stream, so they are ordered with its forward steps without further
// synchronisation: a page written by CopyIn is there for the next Forward, and CopyOut sees
// everything Forward wrote.
//
//   CopyIn from pinned host memory: one cudaMemcpyAsync, waited for before returning.
//   CopyIn from pageable memory: the bytes are copied into a ring of pinned staging slots and the
//     DMA is queued; the call returns once the source has been consumed (the copy into HBM may
//     still be in flight, later calls and Forward are ordered after it). Successive calls (the
//     pages of a fetched block) overlap one page's DMA with the next page's host copy.
//   CopyOut: the DMA into a pinned slot, waited for, then copied to the destination.
//
// Thread-safety: calls are serialised by a mutex (any thread may call).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "common/mutex.h"
#include "kvstash/result.h"
#include "node/page_memory.h"

namespace kvstash::node {

struct CudaPageMemoryOptions {
  size_t slot_bytes = 4ULL << 20;  // pinned staging slot; a larger copy is cut into slots
  size_t slots = 4;
  // Pageable sources through the driver's own staging (cudaMemcpyAsync from pageable memory)
  // instead of the ring; kvstash-bench-node compares the two.
  bool driver_staging = false;
};

class CudaPageMemory final : public PageMemory {
 public:
  // `stream` is the engine's (not owned; outlives this). RESOURCE_EXHAUSTED when HBM or pinned
  // memory cannot be allocated; INTERNAL for other CUDA errors.
  static Result<std::unique_ptr<CudaPageMemory>> Allocate(size_t bytes, int device, cudaStream_t stream,
                                                          const CudaPageMemoryOptions& options = {});
  ~CudaPageMemory() override;

  std::byte* data() override { return base_; }
  size_t size() const override { return size_; }
  bool host_accessible() const override { return false; }
  Status CopyIn(size_t offset, std::span<const std::byte> src) override;
  Status CopyOut(size_t offset, std::span<std::byte> dst) const override;

  // Waits for every queued copy; the first CUDA error of one, if any.
  Status Flush() const;

 private:
  struct Slot {
    std::byte* host = nullptr;  // pinned, slot_bytes
    cudaEvent_t done = nullptr;  // recorded after the slot's last DMA
  };
  CudaPageMemory() = default;
  // Waits until slot `i` may be overwritten.
  Status WaitSlot(size_t i) const REQUIRES(mu_);

  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  CudaPageMemoryOptions options_;
  std::byte* base_ = nullptr;
  size_t size_ = 0;
  mutable Mutex mu_;
  mutable std::vector<Slot> slots_ GUARDED_BY(mu_);
  mutable size_t next_slot_ GUARDED_BY(mu_) = 0;
};

}  // namespace kvstash::node
