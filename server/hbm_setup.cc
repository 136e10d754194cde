#include "server/hbm_setup.h"

#if KVSTASH_HAVE_CUDA
#include "gpu/cuda_util.h"
#include "gpu/hbm_tier.h"
#endif

namespace kvstash::server {

#if KVSTASH_HAVE_CUDA

Result<HbmFactory> MakeHbmFactory(const DaemonConfig& config) {
  KVSTASH_ASSIGN_OR_RETURN(tiers::DramTierOptions like_dram, config.DramOptions());
  const int device = config.gpu;
  const uint64_t capacity = config.hbm_capacity;
  return HbmFactory([like_dram, device, capacity](tiers::EvictHook on_evict) -> Result<tiers::HbmAttachment> {
    gpu::HbmTierOptions o;
    o.device = device;
    o.tier = like_dram;  // watermarks, eviction policy, max block size as for DRAM
    o.tier.capacity_bytes = capacity;
    o.tier.expired_quarantine_ms = 0;  // HBM reservations live only inside a commit: no one-sided writer
    o.tier.on_evict = std::move(on_evict);
    KVSTASH_ASSIGN_OR_RETURN(std::unique_ptr<gpu::HbmTier> tier, gpu::HbmTier::Create(o));
    tiers::HbmAttachment a;
    a.bytes = &tier->byte_access();
    a.arena = std::span<std::byte>(tier->arena_base(), tier->arena_bytes());
    a.policy_name = std::string(tier->policy_name());
    a.tier = std::move(tier);
    return a;
  });
}

std::shared_ptr<void> PinHostMemoryForGpu(void* base, uint64_t bytes, std::string& why) {
  Result<gpu::HostRegistration> r = gpu::HostRegistration::Register(base, bytes);
  if (!r.ok()) {
    why = r.status().message();
    return nullptr;
  }
  return std::make_shared<gpu::HostRegistration>(std::move(*r));
}

std::function<void()> GpuThreadBinder(int device) {
  // cudaSetDevice makes the device's primary context current for the runtime; cudaFree(nullptr)
  // creates it if this is the process's first use, so the driver API (which UCX calls) sees it too.
  return [device] {
    if (cudaSetDevice(device) == cudaSuccess) (void)cudaFree(nullptr);
  };
}

std::string DescribeGpu(int device) {
  Result<std::string> d = gpu::DescribeDevice(device);
  return d.ok() ? *d : d.status().message();
}

#else  // no CUDA in this build

Result<HbmFactory> MakeHbmFactory(const DaemonConfig&) {
  return FailedPrecondition(
      "--hbm-capacity needs a kvstashd built with CUDA (KVSTASH_WITH_CUDA=AUTO with nvcc found, or ON); "
      "this one was built without it");
}

std::shared_ptr<void> PinHostMemoryForGpu(void*, uint64_t, std::string& why) {
  why = "built without CUDA";
  return nullptr;
}

std::function<void()> GpuThreadBinder(int) { return {}; }

std::string DescribeGpu(int) { return "built without CUDA"; }

#endif

}  // namespace kvstash::server
