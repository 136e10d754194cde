// StagingPipeline: moves device bytes to and from the host through a ring of pinned staging slots,
// for when UCX cannot read GPU memory (gpu_data_path.h reports "staged").
//
// A transfer is cut into slot-sized chunks; chunk i uses slot i % slots and its own stream, so up to
// `slots` copies are queued on the copy engine while the host works on earlier chunks:
//
//   Download: device → slot (cudaMemcpyAsync), then consume(offset, slot bytes) on the caller's
//             thread, in chunk order, as soon as that chunk's event completes (a UCX put or a
//             memcpy into the store reads it there);
//   Upload:   produce(offset, slot) fills a slot on the caller's thread (a UCX get lands there),
//             then slot → device; the call returns once every chunk has reached the device.
//
// A callback's non-OK Status stops the transfer and is returned once queued copies have drained.
//
// Thread-safety: one transfer at a time per pipeline (calls from several threads need a pipeline
// each); callbacks run on the calling thread.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "gpu/cuda_util.h"

namespace kvstash::gpu {

struct StagingOptions {
  size_t slot_bytes = 8ULL << 20;  // chunk size; large enough to amortise a copy's ~10 µs setup
  size_t slots = 4;                // chunks in flight
};

class StagingPipeline {
 public:
  using Consumer = std::function<Status(size_t offset, std::span<const std::byte> bytes)>;
  using Producer = std::function<Status(size_t offset, std::span<std::byte> slot)>;

  // Allocates the slots on the current device's host side and one stream and event per slot.
  // INVALID_ARGUMENT for zero slots or slot bytes; the CUDA error otherwise.
  static Result<std::unique_ptr<StagingPipeline>> Create(const StagingOptions& options);

  // Copies `bytes` bytes at device address `src` to the host chunk by chunk (see above).
  Status Download(const void* src, size_t bytes, const Consumer& consume);
  // Fills `bytes` bytes at device address `dst` from the host chunk by chunk (see above).
  Status Upload(void* dst, size_t bytes, const Producer& produce);

  const StagingOptions& options() const { return options_; }

 private:
  explicit StagingPipeline(const StagingOptions& options) : options_(options) {}
  struct Slot {
    PinnedBuffer buffer;
    Stream stream;
    Event done;
  };
  StagingOptions options_;
  std::vector<Slot> slots_;
};

}  // namespace kvstash::gpu
