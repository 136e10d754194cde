// The daemon's HBM tier (kvstashd --hbm-capacity, --gpu; docs/ARCHITECTURE.md §1 `hbm`): how kvstashd builds it
// for the TierManager, in builds with and without CUDA. Host-only header.
//
// Thread-safety: free functions, called by Daemon::Start on the starting thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kvstash/result.h"
#include "server/daemon_config.h"
#include "tiers/tier_manager.h"

namespace kvstash::server {

using HbmFactory = std::function<Result<tiers::HbmAttachment>(tiers::EvictHook)>;

// The factory the TierManager calls to create the HBM tier of `config` (hbm_capacity bytes on GPU
// config.gpu). FAILED_PRECONDITION in a build without CUDA. The factory itself answers
// UNAVAILABLE when the host has no usable GPU, INVALID_ARGUMENT for a GPU index that does not
// exist, RESOURCE_EXHAUSTED when the GPU lacks the memory.
// REQUIRES: config.hbm_capacity > 0.
Result<HbmFactory> MakeHbmFactory(const DaemonConfig& config);

// Page-locks host memory (the DRAM arena) for copies to and from the GPU while the returned owner
// lives. Best effort: nullptr with `why` set when it cannot (no CUDA build, the driver refused).
std::shared_ptr<void> PinHostMemoryForGpu(void* base, uint64_t bytes, std::string& why);

// A function that makes GPU `device`'s primary CUDA context current on the calling thread (the
// transfer server's lanes run it before sending from GPU memory). Empty in a build without CUDA.
std::function<void()> GpuThreadBinder(int device);

// "NVIDIA H100 80GB HBM3, sm_90, ..." for GPU `device`, or the reason it cannot be described.
std::string DescribeGpu(int device);

}  // namespace kvstash::server
