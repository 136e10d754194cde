#include "gpu/gpu_data_path.h"

namespace kvstash::gpu {

std::string_view ToString(GpuDataPath path) { return path == GpuDataPath::kDirect ? "direct" : "staged"; }

GpuDataPathReport ProbeGpuDataPath(const transfer::UcxContext& context) {
  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  const ucs_status_t status = ucp_context_query(context.handle(), &attr);
  const std::string version = "UCX " + transfer::UcxContext::Version();
  if (status != UCS_OK) {
    return {GpuDataPath::kStaged, version + " could not be queried for memory types: " + ucs_status_string(status)};
  }
  if (attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) {
    return {GpuDataPath::kDirect, version + " handles CUDA device memory"};
  }
  return {GpuDataPath::kStaged, version + " has no CUDA memory transport; device bytes go through pinned staging"};
}

GpuDataPathReport ProbeGpuDataPath(const std::string& ucx_transports) {
  auto context = transfer::UcxContext::Create({.transports = ucx_transports, .wakeup = false});
  if (!context.ok()) {
    return {GpuDataPath::kStaged, "no UCX context (" + context.status().message() + "); staging"};
  }
  return ProbeGpuDataPath(**context);
}

}  // namespace kvstash::gpu
