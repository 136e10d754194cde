// Which path GPU-resident KV bytes take to and from the store on this host, decided at run time:
//
//   "direct"  UCX reports CUDA memory among its memory types (a UCX built with cuda_copy/cuda_ipc
//             or GPUDirect RDMA): UCX reads and writes device memory itself;
//   "staged"  UCX cannot touch device memory (Debian's UCX 1.13 has no CUDA transports): bytes go
//             through pinned host staging buffers (gpu/staging_pipeline.h) with CUDA streams.
//
// Host-only: no CUDA headers; built on every machine, so `kvstash status` and metrics can say
// "staged" (or why neither applies) on hosts without CUDA too.
//
// Thread-safety: free functions, safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "transfer/ucx_context.h"

namespace kvstash::gpu {

enum class GpuDataPath { kDirect, kStaged };
std::string_view ToString(GpuDataPath path);  // "direct", "staged"

struct GpuDataPathReport {
  GpuDataPath path = GpuDataPath::kStaged;
  std::string reason;  // one line a person can read: what UCX reported
};

// Asks `context` which memory types its transports handle.
GpuDataPathReport ProbeGpuDataPath(const transfer::UcxContext& context);
// Same, on a fresh UCX context with the given transports (empty = UCX's default). When no context
// can be created the answer is kStaged with UCX's error as the reason.
GpuDataPathReport ProbeGpuDataPath(const std::string& ucx_transports = {});

}  // namespace kvstash::gpu
