#include "transfer/memory_region.h"

namespace kvstash::transfer {

Result<std::unique_ptr<MemoryRegion>> MemoryRegion::Register(std::shared_ptr<UcxContext> context, void* base,
                                                             size_t length) {
  if (base == nullptr || length == 0) return InvalidArgument("cannot register an empty memory range");
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = base;
  params.length = length;
  std::unique_ptr<MemoryRegion> region(new MemoryRegion());
  ucs_status_t status = ucp_mem_map(context->handle(), &params, &region->memh_);
  if (status != UCS_OK) return UcxError(StatusCode::kUnavailable, "registering memory with UCX", status);
  region->context_ = std::move(context);
  region->base_ = static_cast<std::byte*>(base);
  region->length_ = length;
  void* rkey = nullptr;
  size_t rkey_size = 0;
  status = ucp_rkey_pack(region->context_->handle(), region->memh_, &rkey, &rkey_size);
  if (status != UCS_OK) return UcxError(StatusCode::kUnavailable, "packing a UCX remote key", status);
  region->packed_rkey_.assign(static_cast<const char*>(rkey), rkey_size);
  ucp_rkey_buffer_release(rkey);
  return region;
}

MemoryRegion::~MemoryRegion() {
  if (memh_ != nullptr) ucp_mem_unmap(context_->handle(), memh_);
}

}  // namespace kvstash::transfer
