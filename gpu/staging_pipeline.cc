#include "gpu/staging_pipeline.h"

#include <algorithm>

namespace kvstash::gpu {

Result<std::unique_ptr<StagingPipeline>> StagingPipeline::Create(const StagingOptions& options) {
  if (options.slots == 0 || options.slot_bytes == 0) {
    return InvalidArgument("staging needs at least one slot of at least one byte");
  }
  std::unique_ptr<StagingPipeline> p(new StagingPipeline(options));
  for (size_t i = 0; i < options.slots; ++i) {
    Slot slot;
    KVSTASH_ASSIGN_OR_RETURN(slot.buffer, PinnedBuffer::Allocate(options.slot_bytes));
    KVSTASH_ASSIGN_OR_RETURN(slot.stream, Stream::Create());
    KVSTASH_ASSIGN_OR_RETURN(slot.done, Event::Create());
    p->slots_.push_back(std::move(slot));
  }
  return p;
}

Status StagingPipeline::Download(const void* src, size_t bytes, const Consumer& consume) {
  const size_t chunk = options_.slot_bytes;
  const size_t chunks = (bytes + chunk - 1) / chunk;
  const size_t depth = slots_.size();
  const auto* base = static_cast<const std::byte*>(src);
  Status failed;
  size_t issued = 0;
  // Keep `depth` copies queued; consume chunk c once its event fires, then reuse its slot.
  for (size_t c = 0; c < chunks; ++c) {
    while (failed.ok() && issued < chunks && issued < c + depth) {
      Slot& s = slots_[issued % depth];
      const size_t n = std::min(chunk, bytes - issued * chunk);
      failed = CudaStatus(cudaMemcpyAsync(s.buffer.data(), base + issued * chunk, n, cudaMemcpyDeviceToHost,
                                          s.stream.get()),
                          "staging download copy");
      if (failed.ok()) failed = CudaStatus(cudaEventRecord(s.done.get(), s.stream.get()), "cudaEventRecord");
      ++issued;
    }
    Slot& s = slots_[c % depth];
    const Status synced = CudaStatus(cudaEventSynchronize(s.done.get()), "staging download wait");
    if (!failed.ok()) continue;  // drain what was queued before returning
    failed = synced;
    if (failed.ok()) failed = consume(c * chunk, {s.buffer.data(), std::min(chunk, bytes - c * chunk)});
  }
  return failed;
}

Status StagingPipeline::Upload(void* dst, size_t bytes, const Producer& produce) {
  const size_t chunk = options_.slot_bytes;
  const size_t chunks = (bytes + chunk - 1) / chunk;
  const size_t depth = slots_.size();
  auto* base = static_cast<std::byte*>(dst);
  Status failed;
  for (size_t c = 0; c < chunks && failed.ok(); ++c) {
    Slot& s = slots_[c % depth];
    if (c >= depth) failed = CudaStatus(cudaEventSynchronize(s.done.get()), "staging upload wait");
    const size_t n = std::min(chunk, bytes - c * chunk);
    if (failed.ok()) failed = produce(c * chunk, {s.buffer.data(), n});
    if (failed.ok()) {
      failed = CudaStatus(
          cudaMemcpyAsync(base + c * chunk, s.buffer.data(), n, cudaMemcpyHostToDevice, s.stream.get()),
          "staging upload copy");
    }
    if (failed.ok()) failed = CudaStatus(cudaEventRecord(s.done.get(), s.stream.get()), "cudaEventRecord");
  }
  for (Slot& s : slots_) {
    const Status synced = CudaStatus(cudaStreamSynchronize(s.stream.get()), "staging upload drain");
    if (failed.ok()) failed = synced;
  }
  return failed;
}

}  // namespace kvstash::gpu
